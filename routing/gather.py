"""Gather the facts rules test, before they run: contact history, directory facts, language."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select

from intake.envelope import Envelope
from tickets.commands import ContactRef, Executor
from tickets.models import Status, Ticket, table_of

if TYPE_CHECKING:
    from routing.facts import Facts
    from routing.rules import RuleSet

__all__ = ["contact_history", "gather_facts"]

_OPEN = (Status.NEW.value, Status.OPEN.value, Status.PENDING.value, Status.ESCALATED.value)
_tickets = table_of(Ticket)
_HISTORY = (
    select(_tickets.c.status, _tickets.c.channel, func.count(), func.max(_tickets.c.id))
    .where(_tickets.c.contact_id == bindparam("cid"))
    .group_by(_tickets.c.status, _tickets.c.channel)
)
_REF = select(_tickets.c.ref).where(_tickets.c.id == bindparam("tid"))


def contact_history(conn: Executor, contact_id: int) -> dict[str, Any]:
    """Open and past tickets of a contact across every channel, and how the last one ended."""
    rows = conn.execute(_HISTORY, {"cid": contact_id}).all()
    open_tickets = sum(n for status, _, n, _ in rows if status in _OPEN)
    last = max(rows, key=lambda r: r[3], default=None)
    last_ref = None
    if last is not None:
        last_ref = conn.execute(_REF, {"tid": last[3]}).scalar_one_or_none()
    return {
        "open_tickets": open_tickets,
        "past_tickets": sum(n for _, _, n, _ in rows) - open_tickets,
        "channels": sorted({channel for _, channel, _, _ in rows}),
        "last_outcome": last[0] if last is not None else None,
        "last_ticket": last_ref,
    }


def gather_facts(
    conn: Executor,
    envelope: Envelope,
    contact: ContactRef,
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
    customer.update(contact_history(conn, contact.id))
    language = envelope.language or detect_language(envelope.text or envelope.subject)
    return Facts(event=event, now=now, language=language, customer=customer, ticket=ticket)
