"""A web form submission as stored in the intake log, and the web form block of its Envelope.

What intake stores as the raw payload is a canonical JSON document of the submission (sorted
keys, no insignificant whitespace, UTF-8): everything ``parse`` needs to build the Envelope again
without the request, the form definition or the settings of the day. Attachments are already in
the blob store and appear as sha256 references; the client appears as a keyed hash of its IP,
never the address.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from intake.envelope import AttachmentRef, Channel, Envelope

__all__ = ["FORMAT", "StoredSubmission", "WebformClient", "WebformDetails", "looks_like_email"]

FORMAT: Literal["omnidesk.webform/1"] = "omnidesk.webform/1"

# Deliberately loose: one @, something before it, a dotted domain after it, no spaces. The mail
# server is the real judge; this catches typing slips ("ana.example.com", "ana@").
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]{2,}$")


def looks_like_email(value: str) -> bool:
    return bool(_EMAIL.match(value)) and ".." not in value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebformClient(_Frozen):
    """What we know of the browser or program that posted."""

    ip_hash: str = ""
    user_agent: str = ""
    origin: str = ""
    via: Literal["html", "json"] = "html"


class StoredSubmission(_Frozen):
    """The raw payload of a web form message (``Payload.raw``), version 1."""

    format: Literal["omnidesk.webform/1"] = FORMAT
    submission_id: Annotated[str, Field(min_length=1, max_length=64)]
    form_id: Annotated[str, Field(min_length=1, max_length=40)]
    form_title: str = ""
    queue: str | None = None
    name: str = ""
    email: Annotated[str, Field(min_length=3, max_length=320)]
    subject: str = ""
    message: Annotated[str, Field(min_length=1)]
    fields: dict[str, str] = {}
    attachments: tuple[AttachmentRef, ...] = ()
    client: WebformClient = WebformClient()
    submitted_at: datetime

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not looks_like_email(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    def to_bytes(self) -> bytes:
        """The canonical bytes: the same submission always stores the same bytes."""
        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class WebformDetails(_Frozen):
    """The web form block of an Envelope (``Envelope.details``)."""

    form_id: str
    form_title: str = ""
    queue: str | None = None
    fields: dict[str, str] = {}
    user_agent: str = ""
    ip_hash: str = ""
    origin: str = ""
    via: Literal["html", "json"] = "html"

    @classmethod
    def of(cls, envelope: Envelope) -> WebformDetails | None:
        """The web form block of an envelope, or None for an envelope of another channel."""
        if envelope.channel != Channel.WEBFORM or not envelope.details:
            return None
        return cls.model_validate(envelope.details)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
