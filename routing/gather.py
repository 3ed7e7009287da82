"""Gather the facts rules test, before they run: contact history, directory facts, language."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.envelope import Envelope
from tickets.models import Contact, Status, Ticket

if TYPE_CHECKING:
    from routing.facts import Facts
    from routing.rules import RuleSet

__all__ = ["contact_history", "gather_facts"]

_OPEN = (Status.NEW.value, Status.OPEN.value, Status.PENDING.value, Status.ESCALATED.value)


def contact_history(session: Session, contact_id: int) -> dict[str, Any]:
    """Open and past tickets of a contact across every channel, and how the last one ended."""
    rows = session.execute(
        select(Ticket.status, Ticket.channel, func.count(Ticket.id))
        .where(Ticket.contact_id == contact_id)
        .group_by(Ticket.status, Ticket.channel)
    ).all()
    open_tickets = sum(n for status, _, n in rows if status in _OPEN)
    past_tickets = sum(n for status, _, n in rows if status not in _OPEN)
    last = session.execute(
        select(Ticket.status, Ticket.ref)
        .where(Ticket.contact_id == contact_id)
        .order_by(Ticket.id.desc())
        .limit(1)
    ).first()
    return {
        "open_tickets": open_tickets,
        "past_tickets": past_tickets,
        "channels": sorted({channel for _, channel, _ in rows}),
        "last_outcome": last[0] if last else None,
        "last_ticket": last[1] if last else None,
    }


def gather_facts(
    session: Session,
    envelope: Envelope,
    contact: Contact,
    ruleset: "RuleSet | None",
    *,
    now: datetime,
    event: str = "new_ticket",
    ticket: dict[str, Any] | None = None,
) -> "Facts":
    from routing.facts import Facts
    from routing.language import detect_language

    customer: dict[str, Any] = {}
    if ruleset is not None:
        customer.update(ruleset.customer_facts(envelope.sender.address))
    customer.setdefault("name", contact.name or envelope.sender.name)
    customer.update(contact_history(session, contact.id))
    language = envelope.language or detect_language(envelope.text or envelope.subject)
    return Facts(event=event, now=now, language=language, customer=customer, ticket=ticket)
