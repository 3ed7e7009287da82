"""The ``forms:`` section of the channels file, the built-in default form, and the web form limits.

A form is what one page of ours asks: an id (its URL, ``/form/<id>``), a title, the extra fields
beyond the fixed name / email / subject / message / attachments, a queue hint for the routing
rules and the origins (other websites) allowed to post to it with ``fetch()``. With no channels
file at all, the default form (id ``default``) is served at ``/form``; a ``forms:`` entry with
id ``default`` replaces it.

The process-wide limits (rate, attachment sizes and types, the CSRF secret and lifetime) are
settings (``OMNIDESK_FORM_*``), read through ``FormLimits.from_settings`` with the documented
defaults so the adapter works whether or not a given release of ``config.settings`` has them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from config.issues import Issue
from config.yamlpos import YamlDocument

__all__ = [
    "DEFAULT_ALLOWED_TYPES",
    "DEFAULT_FORM",
    "DEFAULT_FORM_ID",
    "RESERVED_FIELD_NAMES",
    "FieldSpec",
    "FormLimits",
    "FormSpec",
    "check_forms_section",
    "forms_by_id",
]

DEFAULT_FORM_ID = "default"
_FORM_ID = r"^[a-z0-9][a-z0-9_-]{0,39}$"
# Extra field names become ``header.<name>`` in the rules: letters, digits and '_' keep them valid
# header names there and keep them apart from the ``x-form-*`` headers the adapter adds itself.
_FIELD_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_QUEUE = r"^[a-z0-9][a-z0-9_-]*$"

# The fixed fields, the honeypot and the hidden fields: an extra field may not take these names.
RESERVED_FIELD_NAMES = frozenset(
    {"name", "email", "subject", "message", "attachments", "submission_id", "form_token",
     "website", "form_id", "fields"}
)

MAX_SUBJECT_CHARS = 300
MAX_MESSAGE_CHARS = 50_000
MAX_NAME_CHARS = 200
MAX_EMAIL_CHARS = 320

# Images a browser can show, PDF, plain text and the office formats. SVG is left out on purpose:
# it can carry scripts, and agents open attachments in the same browser as the agent UI.
DEFAULT_ALLOWED_TYPES: tuple[str, ...] = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/rtf",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.*",
    "application/vnd.oasis.opendocument.*",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FieldSpec(_Strict):
    """One extra field of a form (beyond name, email, subject, message and attachments)."""

    name: Annotated[str, Field(pattern=_FIELD_NAME)]
    label: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["text", "textarea", "email", "tel", "url", "number", "select", "checkbox"] = "text"
    required: bool = False
    max_length: Annotated[int, Field(ge=1, le=MAX_MESSAGE_CHARS)] = 1000
    options: list[Annotated[str, Field(min_length=1, max_length=200)]] = []
    help: Annotated[str, Field(max_length=500)] = ""
    autocomplete: Annotated[str | None, Field(pattern=r"^[a-z][a-z0-9 -]*$", max_length=60)] = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_FIELD_NAMES:
            raise ValueError(
                f"{value!r} is a built-in field of every form; pick another name "
                f"(reserved: {', '.join(sorted(RESERVED_FIELD_NAMES))})"
            )
        return value

    @model_validator(mode="after")
    def _options_for_select(self) -> FieldSpec:
        if self.type == "select" and not self.options:
            raise ValueError("a select field needs options: a list of the choices")
        if self.type != "select" and self.options:
            raise ValueError(f"options are only for type: select, not {self.type}")
        return self


class FormSpec(_Strict):
    """One web form: served at ``/form/<id>``, posted to ``/intake/form/<id>``."""

    id: Annotated[str, Field(pattern=_FORM_ID)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    intro: Annotated[str, Field(max_length=2000)] = ""
    # A hint for the routing rules (``header.x-form-queue``); the rules decide the queue.
    queue: Annotated[str | None, Field(pattern=_QUEUE, max_length=64)] = None
    # Websites (scheme://host[:port]) whose pages may post JSON to this form and frame it.
    allowed_origins: list[Annotated[str, AfterValidator(lambda v: normalise_origin(v))]] = []
    fields: list[FieldSpec] = []
    attachments: bool = True
    subject_required: bool = False

    @model_validator(mode="after")
    def _unique_fields(self) -> FormSpec:
        seen: set[str] = set()
        for spec in self.fields:
            if spec.name in seen:
                raise ValueError(f"two fields are named {spec.name!r}; field names must be unique")
            seen.add(spec.name)
        return self

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    # The default form keeps the short paths, so /form works with no channels file at all.
    @property
    def page_path(self) -> str:
        return "/form" if self.id == DEFAULT_FORM_ID else f"/form/{self.id}"

    @property
    def intake_path(self) -> str:
        return "/intake/form" if self.id == DEFAULT_FORM_ID else f"/intake/form/{self.id}"


def normalise_origin(value: str) -> str:
    """``https://Example.com:443/`` → ``https://example.com``; ValueError when it is no origin."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an origin; write it as https://www.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an origin: give only scheme://host[:port], no path")
    port = parts.port
    host = parts.hostname.lower()
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


DEFAULT_FORM = FormSpec(id=DEFAULT_FORM_ID, title="Contact support",
                        intro="Tell us what you need and we will answer by email.")


def forms_by_id(section: Sequence[FormSpec] | None) -> dict[str, FormSpec]:
    """The forms this process serves: the default one, then the channels file's (which may
    replace the default by using its id)."""
    out = {DEFAULT_FORM_ID: DEFAULT_FORM}
    for form in section or ():
        out[form.id] = form
    return out


def check_forms_section(
    doc: YamlDocument, items: Any, *, environ: Mapping[str, str], base_dir: Path | None, check_env: bool
) -> list[Issue]:
    """What one entry alone cannot tell: two forms with one id (the second would hide the first)."""
    if not isinstance(items, list):
        return []
    issues: list[Issue] = []
    ids: dict[str, int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        form_id = item.get("id")
        if isinstance(form_id, str):
            if form_id in ids:
                line, _ = doc.position(("forms", ids[form_id], "id"))
                issues.append(doc.issue(("forms", index, "id"),
                                        f"duplicate form id {form_id!r} (first used on line {line})"))
            else:
                ids[form_id] = index
    return issues


# --- process-wide limits ----------------------------------------------------------------------
# A secret made at process start when OMNIDESK_FORM_SECRET is not set: fine for one process, but
# tokens issued by one web process are refused by another, so several processes need it set.
_PROCESS_SECRET = secrets.token_bytes(32)


def _secret_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    getter = getattr(value, "get_secret_value", None)
    text = getter() if callable(getter) else value
    return str(text).encode("utf-8") if text else b""


def _types(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_ALLOWED_TYPES
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    return tuple(str(v).strip().lower() for v in value) or DEFAULT_ALLOWED_TYPES


@dataclass(frozen=True)
class FormLimits:
    """The ``OMNIDESK_FORM_*`` settings, with their defaults."""

    rate_limit_per_minute: int = 10
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_total_attachment_bytes: int = 25 * 1024 * 1024
    max_attachments: int = 5
    allowed_types: tuple[str, ...] = DEFAULT_ALLOWED_TYPES
    secret: bytes = _PROCESS_SECRET
    token_max_age_seconds: int = 2 * 60 * 60

    @classmethod
    def from_settings(cls, settings: Any) -> FormLimits:
        base = cls()
        return cls(
            rate_limit_per_minute=int(getattr(settings, "form_rate_limit_per_minute", base.rate_limit_per_minute)),
            max_attachment_bytes=int(getattr(settings, "form_max_attachment_bytes", base.max_attachment_bytes)),
            max_total_attachment_bytes=int(
                getattr(settings, "form_max_total_attachment_bytes", base.max_total_attachment_bytes)
            ),
            max_attachments=int(getattr(settings, "form_max_attachments", base.max_attachments)),
            allowed_types=_types(getattr(settings, "form_allowed_attachment_types", None)),
            secret=_secret_bytes(getattr(settings, "form_secret", None)) or _PROCESS_SECRET,
            token_max_age_seconds=int(
                getattr(settings, "form_token_max_age_seconds", base.token_max_age_seconds)
            ),
        )

    @property
    def max_body_bytes(self) -> int:
        """The largest request body worth reading: every attachment at its limit, base64 (JSON)
        included, plus room for the text fields."""
        attachments = min(self.max_total_attachment_bytes, self.max_attachments * self.max_attachment_bytes)
        return attachments * 4 // 3 + 1024 * 1024
