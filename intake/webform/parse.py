"""Stored web form payload → Envelope, and the best-effort summary of one that will not parse.

``parse_payload`` reads only the payload (``StoredSubmission`` JSON): intake, quarantine replay
and ``route explain`` get the same Envelope from the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from intake.adapter import Payload, PayloadSummary
from intake.envelope import Channel, Envelope, Party, PartyKind, ThreadKey
from intake.errors import UnparseableMessage
from intake.webform.submission import StoredSubmission, WebformDetails

__all__ = ["describe_payload", "parse_payload", "submission_key"]

WEBFORM_PARTY = "webform"
_SUBJECT_FROM_MESSAGE = 80


def submission_key(submission_id: str) -> str:
    """The thread key of a submission (recorded on its ticket)."""
    return f"webform:sub:{submission_id}"


def load_submission(raw: bytes) -> StoredSubmission:
    try:
        return StoredSubmission.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}"
            for e in exc.errors(include_url=False)[:5]
        )
        raise UnparseableMessage(f"not a stored web form submission: {problems}") from None


def _subject(stored: StoredSubmission) -> str:
    if stored.subject.strip():
        return stored.subject.strip()
    # No subject given: the first line of the message, so agents see more than "(no subject)".
    first = next((line.strip() for line in stored.message.splitlines() if line.strip()), "")
    if len(first) > _SUBJECT_FROM_MESSAGE:
        first = first[: _SUBJECT_FROM_MESSAGE - 1].rstrip() + "…"
    return first


def parse_payload(payload: Payload) -> Envelope:
    if payload.channel != Channel.WEBFORM:
        raise UnparseableMessage(f"a {payload.channel!r} payload is not a web form submission")
    stored = load_submission(payload.raw)
    business = Party(address=stored.form_id, name=stored.form_title, kind=WEBFORM_PARTY)
    headers = dict(stored.fields)
    headers["x-form-id"] = stored.form_id
    if stored.queue:
        headers["x-form-queue"] = stored.queue
    details = WebformDetails(
        form_id=stored.form_id,
        form_title=stored.form_title,
        queue=stored.queue,
        fields=dict(stored.fields),
        user_agent=stored.client.user_agent,
        ip_hash=stored.client.ip_hash,
        origin=stored.client.origin,
        via=stored.client.via,
    )
    try:
        return Envelope(
            channel=Channel.WEBFORM,
            external_id=stored.submission_id,
            received_at=payload.received_at,
            sender=Party(address=stored.email, name=stored.name, kind=PartyKind.EMAIL),
            business=business,
            recipients=(business,),
            subject=_subject(stored),
            text=stored.message,
            full_text=stored.message,
            attachments=stored.attachments,
            thread_keys=(ThreadKey(key=submission_key(stored.submission_id), via="submission"),),
            automated=None,
            headers=headers,
            details=details.dump(),
        )
    except ValidationError as exc:
        raise UnparseableMessage(f"web form submission does not make an envelope: {exc}") from None


def describe_payload(payload: Payload) -> PayloadSummary:
    """Who and what, read leniently: the payload is probably broken, that is why it is asked."""
    try:
        data: Any = json.loads(payload.raw)
    except ValueError:
        return PayloadSummary()
    if not isinstance(data, dict):
        return PayloadSummary()

    def text(key: str) -> str:
        value = data.get(key)
        return value[:300] if isinstance(value, str) else ""

    return PayloadSummary(sender=text("email"), subject=text("subject"), reference=text("submission_id"))
