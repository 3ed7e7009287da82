"""Stored messages and the facts to explain or replay them with, read from the store, read-only.

``omnidesk route explain`` and ``omnidesk rules replay`` re-run the rules on messages; this module
gives them what the router saw, without writing anything:

- ``open_store``: the store if one exists (a missing SQLite file is "no store", and is not created);
- ``stored_new_ticket_message``: a ticket's first message, its stored envelope and stored facts;
- ``preview_thread`` and ``preview_facts``: what the router *would* see for a message that is not
  stored (an ``.eml`` file): its thread match (same keys, same lookups, same trust order) and the
  contact's history found by sender identity;
- ``iter_new_ticket_messages``: every stored new-ticket message of a time window as
  ``(ticket ref, envelope, facts)``, streamed in chunks over three plain columns — no ORM objects —
  so replaying 100,000 messages costs seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, cast, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from intake.envelope import Envelope
from intake.errors import BlobNotFound
from routing.decision import ThreadMatch
from routing.facts import Facts
from routing.thread_match import candidate_keys, find_thread
from tickets.commands import ContactRef
from tickets.db import Database, normalise_url
from tickets.models import (
    Contact,
    ContactIdentity,
    Direction,
    IntakeRow,
    OutboxRow,
    Ticket,
    TicketMessage,
)
from tickets.queries import is_participant

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = [
    "MemoryBlobStore",
    "StoredMessage",
    "ThreadPreview",
    "find_contact",
    "iter_new_ticket_messages",
    "open_store",
    "preview_facts",
    "preview_thread",
    "recent_auto_replies",
    "sqlite_file",
    "stored_new_ticket_message",
    "subjects_of",
]

# The same kinds the router counts against the per-sender auto-reply cap.
_AUTO_REPLY_KINDS = ("ack", "auto_reply")


class MemoryBlobStore:
    """A blob store that keeps blobs in memory: parsing an ``.eml`` for explain writes no file."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs[digest] = bytes(data)
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            return self._blobs[sha256]
        except KeyError:
            raise BlobNotFound(sha256) from None

    def exists(self, sha256: str) -> bool:
        return sha256 in self._blobs


# --- the store ------------------------------------------------------------------------------
def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another backend or an in-memory database)."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def open_store(url: str) -> Database | None:
    """The store at ``url``, or None when there is none yet. Creates nothing.

    A SQLite file that does not exist (or holds no tickets table) is no store; ``Database`` would
    create the file's directory, so it is not even built then. A server database that cannot be
    reached raises (``sqlalchemy.exc.OperationalError``): the caller asked for that store.
    """
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None or not path.is_file() or path.stat().st_size == 0:
            return None
    db = Database(url, pool_size=2)
    try:
        with db.engine.connect() as connection:
            present = inspect(connection).has_table(Ticket.__tablename__)
    except Exception:
        db.dispose()
        raise
    if not present:
        db.dispose()
        return None
    return db


# --- one stored message ----------------------------------------------------------------------
@dataclass(frozen=True)
class StoredMessage:
    """A ticket's new-ticket message as routed: the envelope and the facts the rules saw."""

    ref: str
    subject: str
    status: str
    intake_id: int
    envelope: Envelope
    facts: Facts
    facts_stored: bool  # False: the ticket has no recorded facts; they were re-derived
    decision: dict[str, Any] | None  # the Decision recorded when it was routed


def _new_ticket_filter() -> Any:
    return TicketMessage.decision["kind"].as_string() == "new_ticket"


def stored_new_ticket_message(session: Session, ref: str) -> StoredMessage | None:
    """The message that opened ticket ``ref`` (None when there is no such ticket).

    Raises ``LookupError`` when the ticket exists but no inbound message with a stored envelope
    does (a ticket created by hand, or one whose intake row was pruned).
    """
    ticket = session.execute(
        select(Ticket.id, Ticket.ref, Ticket.subject, Ticket.status, Ticket.facts).where(
            Ticket.ref == ref.strip().upper()
        )
    ).first()
    if ticket is None:
        return None
    base = (
        select(IntakeRow.id, IntakeRow.envelope, TicketMessage.decision)
        .select_from(TicketMessage)
        .join(IntakeRow, IntakeRow.id == TicketMessage.intake_id)
        .where(
            TicketMessage.ticket_id == ticket.id,
            TicketMessage.direction == Direction.INBOUND.value,
            IntakeRow.envelope.is_not(None),
        )
        .order_by(TicketMessage.id)
        .limit(1)
    )
    # The message the rules decided on; else (older data) the ticket's first inbound message.
    row = session.execute(base.where(_new_ticket_filter())).first() or session.execute(base).first()
    if row is None:
        raise LookupError(f"{ticket.ref} has no stored inbound message to explain")
    envelope = Envelope.model_validate(row.envelope)
    facts = _facts_of(ticket.facts, envelope)
    return StoredMessage(
        ref=ticket.ref or "",
        subject=ticket.subject,
        status=ticket.status,
        intake_id=row.id,
        envelope=envelope,
        facts=facts,
        facts_stored=bool(ticket.facts) and "event" in ticket.facts,
        decision=row.decision,
    )


def _facts_of(stored: Mapping[str, Any] | None, envelope: Envelope) -> Facts:
    """The facts recorded on the ticket; for a ticket routed without rules (none recorded), the
    ones that can be re-derived from the message alone, at the time it was received."""
    if stored and "event" in stored:
        return Facts.from_dict(stored)
    from routing.language import detect_language

    language = envelope.language or detect_language(envelope.text or envelope.subject)
    return Facts(now=envelope.received_at, language=language)


# --- a message that is not stored (an .eml file) ---------------------------------------------
@dataclass(frozen=True)
class ThreadPreview:
    """What thread matching would decide for a message, looked up read-only."""

    keys: tuple[str, ...]  # the thread keys looked up, in order of trust
    ticket_refs: tuple[str, ...]  # ticket numbers the message names
    match: ThreadMatch | None  # None: a new ticket
    ticket_id: int | None = None
    contact_id: int | None = None
    # The ticket as the follow-up rules would see it (before the message): status, priority, ...
    ticket: dict[str, Any] | None = None
    # The message names this ticket, but its sender is a stranger to it: a new, linked ticket.
    linked_ref: str | None = None
    is_bounce: bool = False
    # This very message is in the intake log already: (intake id, ticket ref or None).
    stored_as: tuple[int, str | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "follow_up": self.match is not None,
            "match": None if self.match is None else self.match.model_dump(mode="json"),
            "ticket": self.ticket,
            "linked_ticket": self.linked_ref,
            "keys_looked_up": list(self.keys),
            "ticket_refs_named": list(self.ticket_refs),
            "bounce": self.is_bounce,
        }

    def stored_dict(self) -> dict[str, Any] | None:
        if self.stored_as is None:
            return None
        return {"intake_id": self.stored_as[0], "ticket_ref": self.stored_as[1]}


def preview_thread(
    session: Session, envelope: Envelope, *, foreign_token_policy: str
) -> ThreadPreview:
    """The router's thread match, looked up without recording anything.

    The same function as the router (``routing.thread_match.find_thread``), and the same stranger
    rule for a ticket number typed by someone who is not on that ticket.
    """
    keys = [key for _, key in candidate_keys(envelope)]
    refs = list(dict.fromkeys(r.upper() for r in envelope.thread_hints.ticket_refs))
    matched = find_thread(session, envelope)
    stored = session.execute(
        select(IntakeRow.id, Ticket.ref)
        .outerjoin(Ticket, Ticket.id == IntakeRow.ticket_id)
        .where(
            IntakeRow.channel == envelope.channel.value,
            IntakeRow.external_id == envelope.external_id,
        )
    ).first()
    common: dict[str, Any] = {
        "keys": tuple(keys),
        "ticket_refs": tuple(refs),
        "is_bounce": envelope.loop.is_bounce,
        "stored_as": None if stored is None else (stored[0], stored[1]),
    }
    if matched is None:
        return ThreadPreview(match=None, **common)
    thread, ticket_id = matched
    ticket = session.execute(
        select(Ticket.ref, Ticket.status, Ticket.priority, Ticket.queue, Ticket.contact_id).where(
            Ticket.id == ticket_id
        )
    ).one()
    if (
        thread.via == "subject-token"
        and foreign_token_policy == "new_ticket"
        and not is_participant(
            session, ticket_id, identity=envelope.sender.identity, address=envelope.sender.address
        )
    ):
        return ThreadPreview(match=None, linked_ref=ticket.ref, **common)
    # What follow-up rules see: the ticket as it is before this message.
    before = {
        "status": ticket.status,
        "priority": ticket.priority,
        "queue": ticket.queue,
        "ref": ticket.ref,
    }
    thread = thread.model_copy(update={"ticket_ref": ticket.ref or thread.ticket_ref})
    return ThreadPreview(
        match=thread, ticket_id=ticket_id, contact_id=ticket.contact_id, ticket=before, **common
    )


def find_contact(session: Session, envelope: Envelope) -> ContactRef | None:
    """The stored contact owning the sender's identity (email address, phone number, ...)."""
    row = session.execute(
        select(Contact.id, Contact.name)
        .join(ContactIdentity, ContactIdentity.contact_id == Contact.id)
        .where(ContactIdentity.identity == envelope.sender.identity)
    ).first()
    return None if row is None else ContactRef(row.id, row.name or "", envelope.sender.identity)


def preview_facts(
    session: Session | None,
    envelope: Envelope,
    ruleset: RuleSet,
    *,
    now: datetime,
    thread: ThreadPreview | None = None,
) -> Facts:
    """The facts the router would gather for ``envelope`` now.

    With a store: ``routing.gather.gather_facts`` itself, on a read-only session — the contact's
    history by sender identity (for a follow-up: the ticket's contact, and the ticket as it is).
    Without one: the rules file's directory facts and the detected language only.
    """
    from routing.gather import gather_facts

    if session is None:
        from routing.language import detect_language

        customer: dict[str, Any] = dict(ruleset.customer_facts(envelope.sender.address))
        customer.setdefault("name", envelope.sender.name)
        language = envelope.language or detect_language(envelope.text or envelope.subject)
        return Facts(now=now, language=language, customer=customer)
    identity = envelope.sender.identity
    if thread is not None and thread.match is not None and thread.contact_id is not None:
        return gather_facts(
            session,
            envelope,
            ContactRef(thread.contact_id, "", identity),
            ruleset,
            now=now,
            event="follow_up",
            ticket=thread.ticket,
        )
    # A sender the store does not know yet: the router would create the contact now, with no
    # history; id 0 is no contact's, so the history lookup finds nothing, as it would then.
    contact = find_contact(session, envelope) or ContactRef(0, envelope.sender.name, identity)
    return gather_facts(session, envelope, contact, ruleset, now=now)


def recent_auto_replies(session: Session, envelope: Envelope, *, since: datetime) -> int:
    """Acknowledgements sent to the sender's contact since ``since`` (the router's per-sender cap)."""
    contact = find_contact(session, envelope)
    if contact is None:
        return 0
    return int(
        session.execute(
            select(func.count(OutboxRow.id)).where(
                OutboxRow.contact_id == contact.id,
                OutboxRow.kind.in_(_AUTO_REPLY_KINDS),
                OutboxRow.created_at >= since,
                OutboxRow.state != "suppressed",
            )
        ).scalar_one()
    )


# --- every stored new-ticket message of a window (replay) ------------------------------------
def iter_new_ticket_messages(
    db: Database, *, since: datetime | None = None, chunk: int = 2000
) -> Iterator[tuple[str, Envelope, Facts]]:
    """``(ticket ref, envelope, facts)`` of each new-ticket message received since ``since``.

    One query over three columns (the envelope and facts as JSON text, the ref), streamed
    ``chunk`` rows at a time (a server-side cursor on PostgreSQL), in routing order; each envelope
    is validated straight from its JSON text by pydantic-core. No ORM object is built.
    """
    query = (
        select(
            Ticket.ref,
            cast(IntakeRow.envelope, Text).label("envelope"),
            cast(Ticket.facts, Text).label("facts"),
        )
        .select_from(TicketMessage)
        .join(IntakeRow, IntakeRow.id == TicketMessage.intake_id)
        .join(Ticket, Ticket.id == TicketMessage.ticket_id)
        .where(
            TicketMessage.direction == Direction.INBOUND.value,
            _new_ticket_filter(),
            IntakeRow.envelope.is_not(None),
        )
        .order_by(TicketMessage.id)
    )
    if since is not None:
        query = query.where(IntakeRow.received_at >= since)
    validate = Envelope.model_validate_json
    loads = json.loads
    with db.engine.connect() as connection:
        result = connection.execution_options(yield_per=chunk).execute(query)
        for partition in result.partitions():
            for ref, envelope_json, facts_json in partition:
                envelope = validate(envelope_json)
                stored = loads(facts_json) if facts_json else None
                yield ref or "", envelope, _facts_of(stored, envelope)


def subjects_of(session: Session, refs: Iterable[str]) -> dict[str, str]:
    """Ticket ref → subject, for the few sample tickets a replay shows."""
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    rows = session.execute(select(Ticket.ref, Ticket.subject).where(Ticket.ref.in_(wanted))).all()
    return {ref: subject for ref, subject in rows if ref}
