"""Read-side queries: tickets as plain dicts for the CLI and the HTTP API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tickets.models import (
    ContactIdentity,
    Direction,
    IntakeRow,
    IntakeState,
    Ticket,
    TicketMessage,
    table_of,
)

__all__ = [
    "get_ticket", "is_participant", "list_quarantine", "list_tickets", "summary_of", "ticket_summary",
    "timeline_entry",
]


# What ``message_count`` counts: messages in and out, not internal notes or events.
MESSAGE_DIRECTIONS = (Direction.INBOUND.value, Direction.OUTBOUND.value)


def ticket_summary(ticket: Ticket, message_count: int) -> dict[str, Any]:
    contact = ticket.contact
    return summary_of(ticket, contact=contact.primary_address if contact else "",
                      contact_name=contact.name if contact else "", message_count=message_count)


def summary_of(ticket: Any, *, contact: str, contact_name: str, message_count: int) -> dict[str, Any]:
    """``ticket_summary`` from anything with the ticket's columns as attributes (a ``Ticket`` or
    a Core row of its table), given its contact's primary address and name."""
    return {
        "ref": ticket.ref,
        "status": ticket.status,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "category": ticket.category,
        "tags": list(ticket.tags or []),
        "assignee": ticket.assignee,
        "channel": ticket.channel,
        "subject": ticket.subject,
        "contact": contact,
        "contact_name": contact_name,
        "message_count": message_count,
        "received_at": ticket.received_at.isoformat(),
        "created_at": ticket.created_at.isoformat(),
        "updated_at": ticket.updated_at.isoformat(),
    }


def list_tickets(
    session: Session, *, status: str | None = None, queue: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    counts = (
        select(TicketMessage.ticket_id, func.count(TicketMessage.id).label("n"))
        .where(TicketMessage.direction.in_(MESSAGE_DIRECTIONS))
        .group_by(TicketMessage.ticket_id)
        .subquery()
    )
    query = select(Ticket, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.ticket_id == Ticket.id)
    if status:
        query = query.where(Ticket.status == status)
    if queue:
        query = query.where(Ticket.queue == queue)
    rows = session.execute(query.order_by(Ticket.id.desc()).limit(limit)).all()
    return [ticket_summary(ticket, int(n)) for ticket, n in rows]


def get_ticket(session: Session, ref: str) -> dict[str, Any] | None:
    ticket = session.execute(select(Ticket).where(Ticket.ref == ref.upper())).scalar_one_or_none()
    if ticket is None:
        return None
    messages = session.execute(
        select(TicketMessage).where(TicketMessage.ticket_id == ticket.id).order_by(TicketMessage.id)
    ).scalars().all()
    out = ticket_summary(ticket, sum(m.direction in MESSAGE_DIRECTIONS for m in messages))
    out["sla_policy"] = ticket.sla_policy
    out["facts"] = ticket.facts or {}
    out["messages"] = [timeline_entry(m) for m in messages]
    return out


def timeline_entry(m: Any) -> dict[str, Any]:
    """One timeline entry as a dict, from a ``TicketMessage`` or a Core row of its table (both
    have the columns as attributes)."""
    return {
        "direction": m.direction,
        "channel": m.channel,
        "sender": m.sender,
        "recipients": m.recipients,
        "subject": m.subject,
        "text": m.text,
        "full_text": m.full_text,
        "html": m.html,
        "attachments": m.attachments,
        "message_id": m.message_id,
        "created_at": m.created_at.isoformat(),
        "decision": m.decision,
        "actor": m.actor,
        "event": m.event,
    }


def count_tickets(session: Session, *, status: str | None = None, queue: str | None = None) -> int:
    query = select(func.count(Ticket.id))
    if status:
        query = query.where(Ticket.status == status)
    if queue:
        query = query.where(Ticket.queue == queue)
    return int(session.execute(query).scalar_one())


def count_quarantine(session: Session) -> int:
    return int(session.execute(
        select(func.count(IntakeRow.id)).where(IntakeRow.state == IntakeState.QUARANTINED.value)
    ).scalar_one())


def list_quarantine(session: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.execute(
        select(IntakeRow)
        .where(IntakeRow.state == IntakeState.QUARANTINED.value)
        .order_by(IntakeRow.id.desc())
        .limit(limit)
    ).scalars()
    return [
        {
            "id": r.id,
            "channel": r.channel,
            "external_id": r.external_id,
            "source": r.source,
            "received_at": r.received_at.isoformat(),
            "reason": r.error,
            "raw_sha256": r.raw_sha256,
            "attempts": r.attempts,
            "sweeps": r.sweeps,
            "envelope": r.envelope,
            "meta": r.meta,
        }
        for r in rows
    ]


def is_participant(conn: Any, ticket_id: int, *, identity: str, address: str) -> bool:
    """Is this sender the ticket's contact, or someone who already wrote on it?

    ``conn`` is a Connection or a Session. Routing asks this before letting a ticket number typed
    in a subject add a message to that ticket.
    """
    tickets, identities, messages = table_of(Ticket), table_of(ContactIdentity), table_of(TicketMessage)
    if conn.execute(
        select(identities.c.id)
        .join(tickets, tickets.c.contact_id == identities.c.contact_id)
        .where(tickets.c.id == ticket_id, identities.c.identity == identity)
    ).first():
        return True
    wanted = address.lower()
    senders = conn.execute(
        select(messages.c.sender).where(
            messages.c.ticket_id == ticket_id, messages.c.direction == Direction.INBOUND.value
        )
    ).scalars()
    return any(sender.lower() == wanted for sender in senders)
