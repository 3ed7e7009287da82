"""The acknowledgement a new ticket sends back: whether to send it, and what it says.

Pure functions; the router writes the result as an outbox row in the routing transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intake.envelope import Channel, Envelope

__all__ = ["AckContent", "default_ack", "reply_subject", "suppression_reason"]


@dataclass(frozen=True)
class AckContent:
    subject: str
    text: str


def reply_subject(ref: str, subject: str) -> str:
    """``[OD-7] Re: <subject>``: the token first so every mail client keeps it in the thread."""
    clean = " ".join(subject.replace(f"[{ref}]", "").split())
    if not clean:
        clean = "your request"
    if not clean.lower().startswith(("re:", "aw:", "sv:", "antw:")):
        clean = f"Re: {clean}"
    return f"[{ref}] {clean}"


def default_ack(*, ref: str, customer_name: str, subject: str) -> AckContent:
    greeting = f"Hello {customer_name}," if customer_name else "Hello,"
    text = (
        f"{greeting}\n\n"
        f"Thank you for contacting us. We have received your message and opened ticket {ref}.\n"
        "Our team will get back to you as soon as possible.\n\n"
        f"To add anything, simply reply to this email and keep [{ref}] in the subject.\n"
    )
    return AckContent(subject=reply_subject(ref, subject), text=text)


def suppression_reason(
    envelope: Envelope,
    *,
    auto_reply: str | bool | None,
    own_domains: tuple[str, ...],
    own_addresses: tuple[str, ...],
    sent_last_hour: int,
    limit_per_hour: int,
) -> str | None:
    """Why no acknowledgement may go out, or None when one should."""
    if auto_reply is False:
        return "a rule set auto_reply: false"
    robot = envelope.automated_reason(own_domains=own_domains, own_addresses=own_addresses)
    if robot:
        return f"automated message ({robot})"
    if envelope.channel is Channel.EMAIL and not envelope.sender.address:
        return "no sender address"
    if sent_last_hour >= limit_per_hour:
        return f"auto-reply cap reached ({sent_last_hour} in the last hour, limit {limit_per_hour})"
    return None


def email_ack_payload(
    envelope: Envelope, *, from_address: str, content: AckContent, ref: str
) -> dict[str, Any]:
    """The outbox payload of an email acknowledgement (composed into MIME at send time)."""
    hints = envelope.thread_hints
    references = list(hints.references)
    if hints.message_id and hints.message_id not in references:
        references.append(hints.message_id)
    return {
        "from": from_address,
        "to": envelope.sender.address,
        "to_name": envelope.sender.name,
        "subject": content.subject,
        "text": content.text,
        "in_reply_to": hints.message_id,
        "references": references,
        "auto_submitted": "auto-replied",
        "ticket_ref": ref,
    }
