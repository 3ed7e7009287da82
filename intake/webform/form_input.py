"""What a client posted, read from any of the three encodings, and checked against its form.

``read_body`` reads at most the limit (refusing early on ``Content-Length``), so a huge upload
costs us a bounded amount of memory; ``read_input`` turns urlencoded, multipart or JSON into one
``FormInput``; ``check_input`` finds every problem at once (a person fixing a form wants the whole
list, not one error per attempt) and says which HTTP status the worst of them deserves.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from intake.webform.abuse import HONEYPOT_FIELD
from intake.webform.settings import (
    MAX_EMAIL_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_SUBJECT_CHARS,
    FieldSpec,
    FormLimits,
    FormSpec,
)
from intake.webform.submission import looks_like_email

__all__ = ["CheckedInput", "FormInput", "Refusal", "Upload", "check_input", "read_body", "read_input"]

Via = Literal["html", "json"]
_FIXED = ("name", "email", "subject", "message")
_HIDDEN = ("submission_id", "form_token", HONEYPOT_FIELD)
# Text fields are small; a multipart text part above this is not a person typing.
_MAX_TEXT_PART = 256 * 1024


class Refusal(Exception):
    """A request we answer with an error: HTTP status, a stable code and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, *, fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str  # as declared by the client (may be empty)
    data: bytes


@dataclass
class FormInput:
    """The posted values, as text, and the files."""

    via: Via
    values: dict[str, str] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    # Problems found while reading (a JSON value of the wrong type, bad base64), by field.
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckedInput:
    """A submission that passed (``errors`` empty) or the list of what to fix."""

    values: dict[str, str]
    extra: dict[str, str]
    uploads: list[tuple[Upload, str]]  # each with its effective content type
    errors: dict[str, str]
    status: int = 200

    @property
    def code(self) -> str:
        return {413: "too_large", 415: "unsupported_type"}.get(self.status, "invalid")


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    too_large = Refusal(
        413, "too_large",
        f"The message with its attachments is larger than {limit // (1024 * 1024)} MB; "
        "attach fewer or smaller files.",
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _clean_text(value: str) -> str:
    """Newlines normalised, control characters (but tab and newline) removed."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c for c in value if c in "\n\t" or unicodedata.category(c) != "Cc")


def _clean_filename(name: str) -> str:
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in ("Cc", "Cf")).strip(" .")
    return base[:255]


async def read_input(request: Request, body: bytes, limits: FormLimits) -> FormInput:
    kind = media_type(request.headers.get("content-type"))
    if kind == "application/json":
        return _read_json(body)
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return await _read_form(request, body, limits)
    raise Refusal(
        415, "unsupported_media_type",
        "Send the form as application/x-www-form-urlencoded, multipart/form-data or application/json.",
    )


async def _read_form(request: Request, body: bytes, limits: FormLimits) -> FormInput:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replayed = Request(request.scope, replay)
    try:
        form = await replayed.form(
            max_files=limits.max_attachments + 1, max_fields=200, max_part_size=_MAX_TEXT_PART
        )
    except (HTTPException, MultiPartException) as exc:  # Starlette's multipart limits and syntax
        detail = str(exc.detail if isinstance(exc, HTTPException) else exc.message)
        if "files" in detail.lower():
            raise Refusal(413, "too_large", f"Attach at most {limits.max_attachments} files.",
                          fields={"attachments": f"Attach at most {limits.max_attachments} files."}) from None
        raise Refusal(400, "bad_request", f"The form data could not be read ({detail}); reload the page "
                      "and send it again.") from None
    out = FormInput(via="html")
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                if not value.filename and not data:
                    continue  # a file input left empty
                out.uploads.append(Upload(_clean_filename(value.filename or ""), value.content_type or "", data))
            elif key not in out.values:
                out.values[key] = _clean_text(value)
    finally:
        await form.close()
    return out


def _read_json(body: bytes) -> FormInput:
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refusal(400, "bad_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Refusal(400, "bad_json", 'The body must be a JSON object such as {"email": ..., "message": ...}.')
    out = FormInput(via="json")
    for key, value in data.items():
        if key == "attachments":
            _read_json_attachments(value, out)
        elif value is None:
            continue
        elif isinstance(value, bool):
            out.values[key] = "yes" if value else ""
        elif isinstance(value, (str, int, float)):
            out.values[key] = _clean_text(str(value))
        else:
            out.errors[key] = "must be a string"
    return out


def _read_json_attachments(value: Any, out: FormInput) -> None:
    shape = 'must be a list of {"filename": ..., "content_type": ..., "content_base64": ...}'
    if not isinstance(value, list):
        out.errors["attachments"] = shape
        return
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("content_base64"), str):
            out.errors["attachments"] = f"attachment {index + 1} {shape.removeprefix('must be a list of ')}"
            return
        try:
            data = base64.b64decode(item["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            out.errors["attachments"] = f"attachment {index + 1}: content_base64 is not valid base64"
            return
        filename = item.get("filename")
        content_type = item.get("content_type")
        out.uploads.append(Upload(
            _clean_filename(filename if isinstance(filename, str) else ""),
            content_type if isinstance(content_type, str) else "",
            data,
        ))


# --- checking ----------------------------------------------------------------------------------
def effective_type(upload: Upload) -> str:
    """The declared type, or the one the file name implies when the client did not say."""
    declared = media_type(upload.content_type)
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(upload.filename)
    return (guessed or declared or "application/octet-stream").lower()


def type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        if pattern.endswith("*"):
            if content_type.startswith(pattern[:-1]):
                return True
        elif content_type == pattern:
            return True
    return False


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{max(n // 1024, 1)} KB"


def _too_long(label: str, value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"{label} is {len(value):,} characters long; shorten it to {limit:,} or fewer."
    return None


def _check_extra(spec: FieldSpec, value: str) -> tuple[str, str | None]:
    """(normalised value, error) of one of the form's own fields."""
    value = value.strip()
    if spec.type == "checkbox":
        value = "yes" if value.lower() in ("yes", "on", "true", "1") else ""
    if not value:
        return value, (f"Fill in “{spec.label}”." if spec.required else None)
    if len(value) > spec.max_length:
        return value, _too_long(spec.label, value, spec.max_length)
    if spec.type == "select" and value not in spec.options:
        return value, f"Choose one of the options for “{spec.label}”."
    if spec.type == "email" and not looks_like_email(value):
        return value, f"“{spec.label}” must be an email address like name@example.com."
    if spec.type == "number" and not re.fullmatch(r"-?\d+([.,]\d+)?", value):
        return value, f"“{spec.label}” must be a number."
    if spec.type == "url" and not re.match(r"^https?://\S+$", value):
        return value, f"“{spec.label}” must be a web address starting with https://."
    return value, None


def _check_uploads(
    form: FormSpec, uploads: list[Upload], limits: FormLimits
) -> tuple[list[tuple[Upload, str]], list[str], int]:
    """(uploads with their types, problems, status) of the attachments."""
    if not uploads:
        return [], [], 200
    if not form.attachments or limits.max_attachments <= 0:
        return [], ["This form does not take attachments; describe the problem in the message."], 422
    problems: list[str] = []
    status = 200
    if len(uploads) > limits.max_attachments:
        problems.append(f"Attach at most {limits.max_attachments} files (you attached {len(uploads)}).")
        status = 413
    typed: list[tuple[Upload, str]] = []
    for upload in uploads:
        name = upload.filename or "an unnamed file"
        if len(upload.data) > limits.max_attachment_bytes:
            problems.append(f"“{name}” is {_size(len(upload.data))}; each file may be at most "
                            f"{_size(limits.max_attachment_bytes)}.")
            status = 413
        content_type = effective_type(upload)
        if not type_allowed(content_type, limits.allowed_types):
            problems.append(f"“{name}” is of a type we do not accept ({content_type}); attach images, "
                            "PDF, text or office documents.")
            status = status if status == 413 else 415
        typed.append((upload, content_type))
    total = sum(len(u.data) for u in uploads)
    if total > limits.max_total_attachment_bytes:
        problems.append(f"The attachments add up to {_size(total)}; together they may be at most "
                        f"{_size(limits.max_total_attachment_bytes)}.")
        status = 413
    return typed, problems, status


def check_input(form: FormSpec, given: FormInput, limits: FormLimits) -> CheckedInput:
    values = {key: given.values.get(key, "").strip() for key in _FIXED}
    values["message"] = given.values.get("message", "").strip("\n ")
    errors: dict[str, str] = {}

    email = values["email"]
    if not email:
        errors["email"] = "Enter your email address, so that we can answer you."
    elif len(email) > MAX_EMAIL_CHARS or not looks_like_email(email):
        errors["email"] = "Enter an email address like name@example.com."
    if problem := _too_long("Your name", values["name"], MAX_NAME_CHARS):
        errors["name"] = problem
    if not values["subject"] and form.subject_required:
        errors["subject"] = "Enter a subject."
    elif problem := _too_long("The subject", values["subject"], MAX_SUBJECT_CHARS):
        errors["subject"] = problem
    if not values["message"]:
        errors["message"] = "Enter your message."
    elif problem := _too_long("Your message", values["message"], MAX_MESSAGE_CHARS):
        errors["message"] = problem + " Attach longer texts as a file."

    extra: dict[str, str] = {}
    for spec in form.fields:
        value, problem = _check_extra(spec, given.values.get(spec.name, ""))
        if problem:
            errors[spec.name] = problem
        if value:
            extra[spec.name] = value

    if given.via == "json":
        known = set(_FIXED) | set(_HIDDEN) | {f.name for f in form.fields} | {"attachments"}
        for key in given.values:
            if key not in known:
                errors[key] = ("unknown field; this form takes: "
                               + ", ".join(sorted(known - {"form_token", HONEYPOT_FIELD})))
    for key, problem in given.errors.items():
        errors.setdefault(key, problem)

    typed, problems, status = _check_uploads(form, given.uploads, limits)
    if problems:
        errors["attachments"] = " ".join(problems)
    if errors and status == 200:
        status = 422
    return CheckedInput(values=values, extra=extra, uploads=typed, errors=errors, status=status)
