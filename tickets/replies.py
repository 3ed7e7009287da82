"""An agent's public reply: the timeline entry and the outbox row, in one transaction.

The reply goes out through the channel the customer used (its adapter's ``reply_channel``: a web
form ticket is answered by email), or through another channel the agent names, to the contact's
identity on that channel. The channel's composer shapes it: for email, the thread headers of the
customer's last message and a Message-ID of ours that is recorded as a thread key, so the
customer's answer threads onto the ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.envelope import AttachmentRef, Envelope, Party, load_envelope
from intake.outbound import Draft, OutboundIntent
from tickets.commands import add_message, add_outbox
from tickets.models import ContactIdentity, Direction, IntakeRow, Status, Ticket, TicketMessage, utcnow
from tickets.work import Actor, NotAllowed, TicketChange, WorkError, change_ticket, first_action, lock_ticket

__all__ = ["Replied", "ReplyComposer", "UnknownChannel", "last_inbound_envelope", "notify_staff", "send_reply"]

# After a reply the ticket waits on the customer, unless the agent says otherwise.
DEFAULT_STATUS_AFTER_REPLY = Status.PENDING.value


class ReplyComposer(Protocol):
    """The channels' outbound side (``intake.registry.Registry``)."""

    def reply_channel(self, envelope: Envelope) -> str: ...

    def compose(self, intent: OutboundIntent, *, channel: str) -> Draft: ...

    def channels(self) -> tuple[str, ...]: ...


class UnknownChannel(WorkError):
    """The reply names a channel no adapter serves."""

    code = "unknown_channel"


@dataclass(frozen=True)
class Replied:
    ticket: Ticket
    outbox_id: int
    channel: str
    recipient: str
    idempotency_key: str


def last_inbound_envelope(session: Session, ticket_id: int) -> Envelope | None:
    """The customer's latest message on the ticket, as its channel parsed it."""
    row = session.execute(
        select(IntakeRow.envelope)
        .join(TicketMessage, TicketMessage.intake_id == IntakeRow.id)
        .where(TicketMessage.ticket_id == ticket_id, TicketMessage.direction == Direction.INBOUND.value,
               IntakeRow.envelope.is_not(None))
        .order_by(TicketMessage.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return load_envelope(row) if row else None


def _recipients(session: Session, ticket: Ticket, answering: Envelope | None, default_channel: str,
                channel: str) -> list[tuple[Party, bool]]:
    """Who to try, in order: the sender of the message answered (when the reply goes the way
    that message came), then each of the contact's identities. The bool: answering it."""
    out: list[tuple[Party, bool]] = []
    if answering is not None and channel == default_channel:
        out.append((answering.sender, True))
    name = ticket.contact.name if ticket.contact else ""
    identities = session.execute(
        select(ContactIdentity).where(ContactIdentity.contact_id == ticket.contact_id).order_by(ContactIdentity.id)
    ).scalars()
    for identity in identities:
        out.append((Party(address=identity.address, kind=identity.kind, name=name), False))
    return out


def send_reply(
    session: Session,
    ref: str,
    text: str,
    actor: Actor,
    composer: ReplyComposer,
    *,
    channel: str | None = None,
    attachments: Sequence[AttachmentRef] = (),
    html: str | None = None,
    status_after: str | None = DEFAULT_STATUS_AFTER_REPLY,
    expected_version: int | None = None,
) -> Replied:
    if not text.strip():
        raise WorkError("a reply needs some text")
    ticket = lock_ticket(session, ref, expected_version=expected_version, allow_closed=False)
    answering = last_inbound_envelope(session, ticket.id)
    default_channel = composer.reply_channel(answering) if answering is not None else ticket.channel
    channel = channel or default_channel
    if channel not in composer.channels():
        raise UnknownChannel(f"no channel {channel!r}; this Omnidesk serves {', '.join(composer.channels())}")
    draft: Draft | None = None
    problems = []
    for party, answers in _recipients(session, ticket, answering, default_channel, channel):
        intent = OutboundIntent(
            kind="reply", ticket_ref=ticket.ref or "", to=party, subject=ticket.subject, text=text,
            answering=answering if answers else None,
            business=answering.business if answering is not None else None,
            html=html, attachments=tuple(attachments), automatic=False,
        )
        try:
            draft = composer.compose(intent, channel=channel)
            break
        except LookupError as exc:
            problems.append(str(exc))
    if draft is None:
        raise NotAllowed(f"{ticket.ref}: the contact has no identity the {channel} channel can reach "
                         f"({'; '.join(problems) or 'no identities'}); reply through another channel "
                         "or add an identity to the contact")
    now = utcnow()
    first_action(session, ticket, actor, now, sets_status=status_after is not None)
    outbox_id = add_outbox(
        session, ticket_id=ticket.id, contact_id=ticket.contact_id, channel=draft.channel, kind="reply",
        recipient=draft.recipient, idempotency_key=draft.idempotency_key, payload=draft.payload,
        thread_keys=draft.thread_keys,
    )
    add_message(
        session, ticket.id, direction=Direction.OUTBOUND, channel=draft.channel, text=draft.text or text,
        sender=draft.sender, recipients=[draft.recipient], subject=draft.subject, html=html,
        attachments=[a.model_dump(mode="json") for a in attachments], message_id=draft.idempotency_key,
        actor=actor.email, created_at=now,
    )
    ticket.version = (ticket.version or 1) + 1
    ticket.updated_at = now
    if status_after is not None and status_after != ticket.status:
        session.flush()
        ticket = change_ticket(session, ticket.ref or ref, TicketChange(status=status_after), actor)
    return Replied(ticket, outbox_id, draft.channel, draft.recipient, draft.idempotency_key)


def notify_staff(session: Session, ticket: Ticket, emails: Sequence[str], *, subject: str, text: str,
                 composer: ReplyComposer, channel: str = "email") -> list[int]:
    """Tell agents about a ticket (a note naming them): outbox rows to staff, not on the timeline."""
    ids = []
    for email in dict.fromkeys(e.strip().lower() for e in emails):
        intent = OutboundIntent(kind="notify", ticket_ref=ticket.ref or "", to=Party(address=email, kind="email"),
                                subject=subject[:250], text=text)
        draft = composer.compose(intent, channel=channel)
        ids.append(add_outbox(session, ticket_id=ticket.id, contact_id=None, channel=draft.channel, kind="notify",
                              recipient=draft.recipient, idempotency_key=draft.idempotency_key,
                              payload=draft.payload))
    return ids
