"""Envelopes stored by the first release (schema version 1), read as version 2.

Version 1 was the email-only shape: To/Cc, RFC 3834 signals and Message-IDs sat at the top level.
Its rows keep routing, explaining and replaying: ``upgrade_v1`` moves the email fields into the
email block and derives thread keys and the ``automated`` verdict the way the email adapter does
today. (The verdict about our own addresses needs our identities, which a stored row does not
know; routing checks the sender against every adapter's identities as well.)
"""

from __future__ import annotations

from typing import Any

from intake.envelope import Envelope

__all__ = ["upgrade_v1"]

_EMAIL_ONLY = ("to", "cc", "thread_hints", "loop")


def upgrade_v1(data: dict[str, Any]) -> Envelope:
    from intake.email.details import EmailDetails, LoopSignals, email_envelope
    from intake.envelope import AttachmentRef, Party, ThreadKey

    hints = dict(data.get("thread_hints") or {})
    loop = LoopSignals.model_validate(data.get("loop") or {})
    channel = str(data.get("channel") or "email")
    sender = Party.model_validate(data["sender"])
    recipients = tuple(Party.model_validate(p) for p in data.get("recipients") or ())
    common: dict[str, Any] = {
        "external_id": data["external_id"],
        "received_at": data["received_at"],
        "sender": sender,
        "recipients": recipients,
        "subject": data.get("subject", ""),
        "text": data.get("text", ""),
        "full_text": data.get("full_text", ""),
        "html": data.get("html"),
        "attachments": tuple(AttachmentRef.model_validate(a) for a in data.get("attachments") or ()),
        "ticket_refs": tuple(hints.get("ticket_refs") or ()),
        "headers": dict(data.get("headers") or {}),
        "raw_ref": data.get("raw_ref"),
    }
    if channel == "email":
        details = EmailDetails(
            message_id=hints.get("message_id"),
            in_reply_to=tuple(hints.get("in_reply_to") or ()),
            references=tuple(hints.get("references") or ()),
            to=tuple(Party.model_validate(p) for p in data.get("to") or ()),
            cc=tuple(Party.model_validate(p) for p in data.get("cc") or ()),
            loop=loop,
        )
        envelope = email_envelope(details=details, **common)
        return envelope.model_copy(update={"language": data.get("language")})
    # Version 1 had no other adapter; a conversation hint becomes that channel's key.
    keys: tuple[ThreadKey, ...] = ()
    if hints.get("conversation"):
        keys = (ThreadKey(key=f"{channel}:{hints['conversation']}", via="conversation", conversation=True),)
    return Envelope(
        channel=channel,
        thread_keys=keys,
        language=data.get("language"),
        **{k: v for k, v in common.items()},
    )


def looks_like_v1(data: dict[str, Any]) -> bool:
    return data.get("schema_version", 1) == 1 or any(k in data for k in _EMAIL_ONLY)


__all__ += ["looks_like_v1"]
