"""Commands that change tickets: the store's write API, called inside one transaction.

Each function takes the caller's connection (a SQLAlchemy ``Connection``, or a ``Session`` for
the read helpers) so that a ticket change, its thread keys and the outbox rows it causes commit
together or not at all. They are written as Core statements, not ORM units of work: routing runs
them for every message, and the ORM's bookkeeping would cost more than the database work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from tickets.models import (
    Contact,
    ContactIdentity,
    Direction,
    OutboxRow,
    OutboxState,
    Priority,
    Status,
    ThreadKey,
    Ticket,
    TicketMessage,
    table_of,
    utcnow,
)

__all__ = [
    "ContactRef",
    "Executor",
    "TicketRef",
    "add_message",
    "add_outbox",
    "add_thread_keys",
    "claim_thread_keys",
    "count_recent_outbox",
    "create_ticket",
    "find_or_create_contact",
    "load_ticket",
    "move_thread_keys",
    "ref_of_ticket",
    "tickets_by_keys",
    "tickets_by_refs",
    "update_ticket",
]

_contacts = table_of(Contact)
_identities = table_of(ContactIdentity)
_tickets = table_of(Ticket)
_messages = table_of(TicketMessage)
_keys = table_of(ThreadKey)
_outbox = table_of(OutboxRow)


class Executor(Protocol):
    """A Connection or a Session: anything that executes a statement."""

    def execute(self, statement: Executable, parameters: Any = None) -> Any: ...


@dataclass(frozen=True)
class ContactRef:
    id: int
    name: str
    identity: str


@dataclass(frozen=True)
class TicketRef:
    """The columns of a ticket routing needs, read in one statement."""

    id: int
    ref: str
    status: str
    priority: str
    queue: str
    category: str | None
    tags: list[str]
    contact_id: int
    facts: dict[str, Any]
    closed_at: datetime | None = None


# Statements built once: per-message code then only binds parameters, which skips SQLAlchemy's
# statement construction and cache-key work (most of the cost of a small statement).
_FIND_CONTACT = (
    select(_contacts.c.id, _contacts.c.name)
    .join(_identities, _identities.c.contact_id == _contacts.c.id)
    .where(_identities.c.identity == bindparam("identity"))
)
_NAME_CONTACT = update(_contacts).where(_contacts.c.id == bindparam("cid")).values(name=bindparam("name"))
_INSERT_CONTACT = insert(_contacts).returning(_contacts.c.id)
_INSERT_IDENTITY = insert(_identities)
_INSERT_TICKET = insert(_tickets).returning(_tickets.c.id)
_SET_REF = update(_tickets).where(_tickets.c.id == bindparam("tid")).values(ref=bindparam("ref"))
_LOAD_TICKET = select(
    _tickets.c.id, _tickets.c.ref, _tickets.c.status, _tickets.c.priority, _tickets.c.queue,
    _tickets.c.category, _tickets.c.tags, _tickets.c.contact_id, _tickets.c.facts, _tickets.c.closed_at,
).where(_tickets.c.id == bindparam("tid"))
_REF_OF = select(_tickets.c.ref).where(_tickets.c.id == bindparam("tid"))
_INSERT_MESSAGE = insert(_messages)
_INSERT_OUTBOX = insert(_outbox).returning(_outbox.c.id)
_INSERT_KEY = insert(_keys)
_FIND_KEYS = select(_keys.c.key, _keys.c.ticket_id).where(_keys.c.key.in_(bindparam("keys", expanding=True)))
# A merged ticket's reference leads to the ticket it was merged into.
_FIND_REFS = select(_tickets.c.ref, func.coalesce(_tickets.c.merged_into_id, _tickets.c.id)).where(
    _tickets.c.ref.in_(bindparam("refs", expanding=True))
)
_COUNT_OUTBOX = select(func.count()).select_from(_outbox).where(
    _outbox.c.contact_id == bindparam("cid"),
    _outbox.c.kind.in_(bindparam("kinds", expanding=True)),
    _outbox.c.created_at >= bindparam("since"),
    _outbox.c.state != OutboxState.SUPPRESSED.value,
)


_KEYS_IF_NEW = {
    "sqlite": sqlite.insert(_keys).on_conflict_do_nothing(index_elements=["key"]),
    "postgresql": postgresql.insert(_keys).on_conflict_do_nothing(index_elements=["key"]),
}


def _insert_keys_if_new(conn: Executor) -> Any:
    dialect = getattr(conn, "dialect", None) or conn.get_bind().dialect  # type: ignore[attr-defined]
    return _KEYS_IF_NEW[dialect.name]


def find_or_create_contact(conn: Executor, *, identity: str, kind: str, address: str, name: str) -> ContactRef:
    """The contact owning ``identity``, created with that one identity when new.

    Two workers creating the same new contact race on the unique identity; the loser's insert
    raises IntegrityError and its caller retries the whole transaction.
    """
    found = conn.execute(_FIND_CONTACT, {"identity": identity}).first()
    if found is not None:
        contact_id, current = found
        if name and not current:
            conn.execute(_NAME_CONTACT, {"cid": contact_id, "name": name})
            current = name
        return ContactRef(contact_id, current, identity)
    contact_id = conn.execute(_INSERT_CONTACT, {"name": name, "created_at": utcnow()}).scalar_one()
    conn.execute(
        _INSERT_IDENTITY, {"contact_id": contact_id, "kind": kind, "address": address, "identity": identity}
    )
    return ContactRef(contact_id, name, identity)


def create_ticket(
    conn: Executor,
    *,
    prefix: str,
    contact_id: int,
    channel: str,
    subject: str,
    queue: str,
    priority: str = Priority.NORMAL.value,
    status: str = Status.NEW.value,
    received_at: datetime,
    category: str | None = None,
    tags: Iterable[str] = (),
    assignee: str | None = None,
    sla_policy: str | None = None,
    facts: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Insert a ticket; returns (id, ref). The ref is the prefix and the id: OD-1042."""
    now = utcnow()
    ticket_id = conn.execute(
        _INSERT_TICKET,
        {
            "status": status,
            "priority": priority,
            "queue": queue,
            "category": category,
            "tags": list(tags),
            "assignee": assignee,
            "sla_policy": sla_policy,
            "subject": subject,
            "channel": channel,
            "contact_id": contact_id,
            "facts": facts or {},
            "received_at": received_at,
            "last_inbound_at": received_at,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    ref = f"{prefix}-{ticket_id}"
    conn.execute(_SET_REF, {"tid": ticket_id, "ref": ref})
    return ticket_id, ref


def load_ticket(conn: Executor, ticket_id: int) -> TicketRef | None:
    row = conn.execute(_LOAD_TICKET, {"tid": ticket_id}).first()
    if row is None:
        return None
    return TicketRef(row[0], row[1] or "", row[2], row[3], row[4], row[5], list(row[6] or []), row[7],
                     dict(row[8] or {}), row[9])


def ref_of_ticket(conn: Executor, ticket_id: int) -> str:
    return str(conn.execute(_REF_OF, {"tid": ticket_id}).scalar_one_or_none() or "")


def update_ticket(conn: Executor, ticket_id: int, **values: Any) -> None:
    conn.execute(update(_tickets).where(_tickets.c.id == ticket_id).values(updated_at=utcnow(), **values))


def add_message(
    conn: Executor,
    ticket_id: int,
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
    actor: str | None = None,
    event: dict[str, Any] | None = None,
) -> None:
    """One timeline entry. ``actor`` (an agent's email, ``customer``, ``system``) and ``event``
    (what an EVENT entry changed, e.g. ``{"type": "contact_merged", ...}``) are optional so
    older callers keep writing what they always wrote."""
    values: dict[str, Any] = {
        "ticket_id": ticket_id,
        "intake_id": intake_id,
        "direction": direction.value,
        "channel": channel,
        "sender": sender,
        "recipients": list(recipients),
        "subject": subject,
        "text": text,
        "full_text": full_text or text,
        "html": html,
        "attachments": attachments or [],
        "message_id": message_id,
        "decision": decision,
        "created_at": created_at or utcnow(),
        "actor": actor,
    }
    # Only when given: a JSON column binds None as the JSON value null, not SQL NULL.
    if event is not None:
        values["event"] = event
    conn.execute(_INSERT_MESSAGE, values)


def add_outbox(
    conn: Executor,
    *,
    ticket_id: int | None,
    contact_id: int | None,
    channel: str,
    kind: str,
    recipient: str,
    idempotency_key: str,
    payload: Mapping[str, Any],
    thread_keys: Iterable[str] = (),
) -> int:
    """One outbox row, in the caller's transaction. ``thread_keys`` (the composer's: our
    Message-ID for email) are recorded against the ticket: whatever answers this message cites
    them, and must lead back to the ticket."""
    now = utcnow()
    values = {
        "ticket_id": ticket_id,
        "contact_id": contact_id,
        "channel": channel,
        "kind": kind,
        "recipient": recipient,
        "idempotency_key": idempotency_key,
        "payload": dict(payload),
        "state": OutboxState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    outbox_id = int(conn.execute(_INSERT_OUTBOX, values).scalar_one())
    if ticket_id is not None and thread_keys:
        add_thread_keys(conn, ticket_id, thread_keys)
    return outbox_id


def tickets_by_keys(conn: Executor, keys: Iterable[str]) -> dict[str, int]:
    """Map each known thread key among ``keys`` to its ticket id."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    rows = conn.execute(_FIND_KEYS, {"keys": wanted})
    return {key: ticket_id for key, ticket_id in rows}


def tickets_by_refs(conn: Executor, refs: Iterable[str]) -> dict[str, int]:
    wanted = list(dict.fromkeys(r.upper() for r in refs))
    if not wanted:
        return {}
    rows = conn.execute(_FIND_REFS, {"refs": wanted})
    return {ref: ticket_id for ref, ticket_id in rows}


def move_thread_keys(conn: Executor, keys: Iterable[str], *, from_ticket: int, to_ticket: int) -> bool:
    """Move conversation keys from a closed ticket to its successor. False when any key no longer
    points at ``from_ticket`` (a concurrent worker moved it first: the caller starts over)."""
    for key in dict.fromkeys(keys):
        moved = conn.execute(
            update(_keys).where(_keys.c.key == key, _keys.c.ticket_id == from_ticket).values(ticket_id=to_ticket)
        )
        if moved.rowcount == 1:
            continue
        now_at = tickets_by_keys(conn, [key]).get(key)
        if now_at is None:  # never recorded: the successor simply claims it
            claim_thread_keys(conn, to_ticket, [key])
        elif now_at != to_ticket:
            return False
    return True


def claim_thread_keys(conn: Executor, ticket_id: int, keys: Iterable[str]) -> None:
    """Insert keys for a new ticket; a key taken meanwhile raises IntegrityError (caller retries)."""
    now = utcnow()
    rows = [{"key": key, "ticket_id": ticket_id, "created_at": now} for key in dict.fromkeys(keys)]
    if rows:
        conn.execute(_INSERT_KEY, rows)


def add_thread_keys(conn: Executor, ticket_id: int, keys: Iterable[str]) -> None:
    """Insert keys for an existing ticket, leaving keys that already point elsewhere alone."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return
    now = utcnow()
    conn.execute(_insert_keys_if_new(conn), [{"key": k, "ticket_id": ticket_id, "created_at": now} for k in wanted])


def count_recent_outbox(conn: Executor, *, contact_id: int, kinds: Iterable[str], since: datetime) -> int:
    """How many messages of ``kinds`` went (or are going) to a contact since ``since``."""
    return int(
        conn.execute(_COUNT_OUTBOX, {"cid": contact_id, "kinds": list(kinds), "since": since}).scalar_one()
    )
