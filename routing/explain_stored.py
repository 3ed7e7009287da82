"""Stored messages and the facts to explain or replay them with, read from the store, read-only.

``omnidesk route explain`` and ``omnidesk rules replay`` re-run the rules on messages; this module
gives them what the router saw, without writing anything:

- ``open_store``: the store if one exists (a missing SQLite file is "no store", and is not created);
- ``stored_new_ticket_message``: a ticket's first message, its stored envelope and stored facts;
- ``thread_preview``: the thread part of the router's own ``look_up`` for a message that is not
  stored (an ``.eml`` file, a stored webhook payload), as explain shows it; ``directory_facts``:
  the facts when there is no store at all;
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

from sqlalchemy import Text, cast, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from intake.envelope import Envelope, load_envelope
from intake.errors import BlobNotFound
from routing.decision import ThreadMatch
from routing.facts import Facts
from routing.situation import Situation
from routing.thread_match import candidate_keys
from tickets.db import Database, normalise_url
from tickets.models import Direction, IntakeRow, Ticket, TicketMessage

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = [
    "MemoryBlobStore",
    "StoredMessage",
    "ThreadPreview",
    "directory_facts",
    "iter_new_ticket_messages",
    "open_store",
    "sqlite_file",
    "stored_new_ticket_message",
    "subjects_of",
    "thread_preview",
]



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
    envelope = load_envelope(row.envelope)
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


def thread_preview(session: Session, envelope: Envelope, situation: Situation) -> ThreadPreview:
    """The thread part of a ``Situation`` (``routing.situation.look_up``) as explain shows it."""
    keys = [key for _, key in candidate_keys(envelope)]
    refs = list(dict.fromkeys(r.upper() for r in envelope.ticket_refs))
    stored = session.execute(
        select(IntakeRow.id, Ticket.ref)
        .outerjoin(Ticket, Ticket.id == IntakeRow.ticket_id)
        .where(
            IntakeRow.channel == envelope.channel,
            IntakeRow.external_id == envelope.external_id,
        )
    ).first()
    ticket = situation.ticket
    match = situation.thread
    if match is not None and ticket is not None:
        match = match.model_copy(update={"ticket_ref": ticket.ref or match.ticket_ref})
    return ThreadPreview(
        keys=tuple(keys),
        ticket_refs=tuple(refs),
        match=match,
        ticket_id=None if ticket is None else ticket.id,
        contact_id=None if ticket is None else ticket.contact_id,
        ticket=situation.ticket_before,
        linked_ref=situation.linked_ref,
        is_bounce=envelope.delivery_report is not None,
        stored_as=None if stored is None else (stored[0], stored[1]),
    )


def directory_facts(envelope: Envelope, ruleset: RuleSet, *, now: datetime) -> Facts:
    """The facts when there is no store: the rules file's directory facts and the language."""
    from routing.language import detect_language

    customer: dict[str, Any] = dict(ruleset.customer_facts(envelope.sender.address))
    customer.setdefault("name", envelope.sender.name)
    language = envelope.language or detect_language(envelope.text or envelope.subject)
    return Facts(now=now, language=language, customer=customer)


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
    validate = _validate_json
    loads = json.loads
    with db.engine.connect() as connection:
        result = connection.execution_options(yield_per=chunk).execute(query)
        for partition in result.partitions():
            for ref, envelope_json, facts_json in partition:
                envelope = validate(envelope_json)
                stored = loads(facts_json) if facts_json else None
                yield ref or "", envelope, _facts_of(stored, envelope)


def _validate_json(text: str) -> Envelope:
    """An envelope from its stored JSON text: straight to pydantic-core, or via the upgrade of
    an older schema version."""
    try:
        return Envelope.model_validate_json(text)
    except ValueError:
        return load_envelope(text)


def subjects_of(session: Session, refs: Iterable[str]) -> dict[str, str]:
    """Ticket ref → subject, for the few sample tickets a replay shows."""
    wanted = sorted(set(refs))
    if not wanted:
        return {}
    rows = session.execute(select(Ticket.ref, Ticket.subject).where(Ticket.ref.in_(wanted))).all()
    return {ref: subject for ref, subject in rows if ref}
