"""Commands that change tickets: the store's write API, called inside a ``Database.write()``.

Each function takes the caller's session so that a ticket change, its thread keys and the outbox
rows it causes commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tickets.models import (
    Contact,
    ContactIdentity,
    Direction,
    OutboxRow,
    Priority,
    Status,
    ThreadKey,
    Ticket,
    TicketMessage,
    utcnow,
)

__all__ = [
    "add_message",
    "add_thread_keys",
    "claim_thread_keys",
    "count_recent_outbox",
    "create_ticket",
    "find_or_create_contact",
    "message_key",
    "tickets_by_keys",
]


def message_key(message_id: str) -> str:
    """The thread key of a Message-ID (already in canonical ``<a@b>`` form)."""
    return f"mid:{message_id}"


def find_or_create_contact(session: Session, *, identity: str, kind: str, address: str, name: str) -> Contact:
    """The contact owning ``identity``, created with that one identity when new.

    Two workers creating the same new contact race on the unique identity; the loser's flush
    raises IntegrityError and its caller retries the whole transaction.
    """
    contact = session.execute(
        select(Contact).join(ContactIdentity).where(ContactIdentity.identity == identity)
    ).scalar_one_or_none()
    if contact is not None:
        if name and not contact.name:
            contact.name = name
        return contact
    contact = Contact(name=name)
    session.add(contact)
    session.flush()
    session.add(ContactIdentity(contact_id=contact.id, kind=kind, address=address, identity=identity))
    session.flush()
    return contact


def create_ticket(
    session: Session,
    *,
    prefix: str,
    contact: Contact,
    channel: str,
    subject: str,
    queue: str,
    priority: str = Priority.NORMAL.value,
    received_at: datetime,
    category: str | None = None,
    tags: Iterable[str] = (),
    assignee: str | None = None,
    sla_policy: str | None = None,
    facts: dict[str, Any] | None = None,
) -> Ticket:
    ticket = Ticket(
        status=Status.NEW.value,
        priority=priority,
        queue=queue,
        category=category,
        tags=list(tags),
        assignee=assignee,
        sla_policy=sla_policy,
        subject=subject,
        channel=channel,
        contact_id=contact.id,
        facts=facts or {},
        received_at=received_at,
        last_inbound_at=received_at,
    )
    session.add(ticket)
    session.flush()  # the id is the ticket number
    ticket.ref = f"{prefix}-{ticket.id}"
    return ticket


def add_message(
    session: Session,
    ticket: Ticket,
    *,
    direction: Direction,
    channel: str,
    text: str,
    sender: str = "",
    recipients: Iterable[str] = (),
    subject: str = "",
    full_text: str = "",
    html: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    message_id: str | None = None,
    intake_id: int | None = None,
    decision: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> TicketMessage:
    message = TicketMessage(
        ticket_id=ticket.id,
        intake_id=intake_id,
        direction=direction.value,
        channel=channel,
        sender=sender,
        recipients=list(recipients),
        subject=subject,
        text=text,
        full_text=full_text or text,
        html=html,
        attachments=attachments or [],
        message_id=message_id,
        decision=decision,
        created_at=created_at or utcnow(),
    )
    session.add(message)
    return message


def tickets_by_keys(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Map each known thread key among ``keys`` to its ticket id."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    rows = session.execute(select(ThreadKey.key, ThreadKey.ticket_id).where(ThreadKey.key.in_(wanted)))
    return {key: ticket_id for key, ticket_id in rows}


def claim_thread_keys(session: Session, ticket_id: int, keys: Iterable[str]) -> None:
    """Insert keys for a new ticket; a key taken meanwhile raises IntegrityError (caller retries)."""
    now = utcnow()
    session.add_all(ThreadKey(key=key, ticket_id=ticket_id, created_at=now) for key in dict.fromkeys(keys))
    session.flush()


def add_thread_keys(session: Session, ticket_id: int, keys: Iterable[str]) -> None:
    """Insert keys for an existing ticket, leaving keys that already point elsewhere alone."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    now = utcnow()
    statement = (
        dialect.insert(ThreadKey)
        .values([{"key": key, "ticket_id": ticket_id, "created_at": now} for key in wanted])
        .on_conflict_do_nothing(index_elements=["key"])
    )
    session.execute(statement)


def count_recent_outbox(session: Session, *, contact_id: int, kinds: Iterable[str], since: datetime) -> int:
    """How many messages of ``kinds`` went (or are going) to a contact since ``since``."""
    return int(
        session.execute(
            select(func.count(OutboxRow.id)).where(
                OutboxRow.contact_id == contact_id,
                OutboxRow.kind.in_(list(kinds)),
                OutboxRow.created_at >= since,
                OutboxRow.state != "suppressed",
            )
        ).scalar_one()
    )
