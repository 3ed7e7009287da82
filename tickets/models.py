"""The store's tables, as SQLAlchemy models. Alembic migrations in ``tickets/migrations`` create them.

The store knows no channel protocol and no broker: channels are plain strings here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Base",
    "Contact",
    "ContactIdentity",
    "Direction",
    "IntakeRow",
    "IntakeState",
    "OutboxRow",
    "OutboxState",
    "Priority",
    "QueueCursor",
    "Status",
    "ThreadKey",
    "Ticket",
    "TicketMessage",
    "table_of",
    "utcnow",
]


def table_of(model: type[Base]) -> Table:
    """A model's Table, typed as one (``Model.__table__`` is typed as a generic FromClause)."""
    return cast(Table, model.__table__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite's INTEGER PRIMARY KEY is its rowid; BigInteger there would lose autoincrement.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Status(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NOTE = "note"
    EVENT = "event"  # what happened to the ticket: a delivery failure, a status change


class IntakeState(StrEnum):
    PENDING = "pending"  # logged, not routed yet: the sweeper re-enqueues these
    ROUTED = "routed"
    QUARANTINED = "quarantined"  # could not be parsed or routed; raw kept, reason recorded


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for (another) attempt at next_attempt_at
    SENDING = "sending"  # claimed by a dispatcher; a stale claim is retried by the sweeper
    SENT = "sent"
    DELIVERED = "delivered"  # the provider reported it reached the customer's device
    READ = "read"  # ... and that it was read (WhatsApp)
    FAILED = "failed"  # gave up, or the provider reported a permanent failure (bounce)
    SUPPRESSED = "suppressed"  # decided not to send (e.g. the contact's auto-reply cap)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    identities: Mapped[list[ContactIdentity]] = relationship(
        back_populates="contact", order_by="ContactIdentity.id", lazy="selectin"
    )

    @property
    def primary_address(self) -> str:
        return self.identities[0].address if self.identities else ""


class ContactIdentity(Base):
    """One address of a contact: an email, a phone number (E.164), a Slack user."""

    __tablename__ = "contact_identities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(320))
    # "kind:address" lower-cased where the kind compares case-insensitively; unique across contacts.
    identity: Mapped[str] = mapped_column(String(340), unique=True)

    contact: Mapped[Contact] = relationship(back_populates="identities")


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Human reference such as OD-1042; kept as written so a later prefix change breaks no thread.
    ref: Mapped[str | None] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.NEW.value)
    priority: Mapped[str] = mapped_column(String(16), default=Priority.NORMAL.value)
    queue: Mapped[str] = mapped_column(String(100))
    category: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    assignee: Mapped[str | None] = mapped_column(String(320))
    sla_policy: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(20))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    # Facts gathered for the agent (customer history, language, directory facts).
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # When the channel received the first message: the SLA clock starts here.
    received_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_inbound_at: Mapped[datetime | None]
    # Bumped by every change an agent makes: ``If-Match`` compares it, so two agents editing the
    # same ticket cannot silently overwrite each other.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Set when the ticket was merged into another: its messages moved there, and a message
    # naming this ticket's reference lands there.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    # When it was last resolved (the close clock) and closed; how often a customer reopened it.
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    reopened_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The first time an agent acted on it (new -> open), for first-response figures.
    first_agent_action_at: Mapped[datetime | None]

    contact: Mapped[Contact] = relationship(lazy="joined")
    messages: Mapped[list[TicketMessage]] = relationship(
        back_populates="ticket", order_by="TicketMessage.id", lazy="raise_on_sql"
    )

    # The ticket list (``tickets.search``) pages newest first by (updated_at, id) or
    # (created_at, id) with a keyset cursor. Each filter an agent's view starts from (status,
    # queue, assignee, contact) leads an index that continues with the sort key, so a page and
    # a deep page cost the same at any table size; the other filters (priority, channel, tag,
    # category, text) are checked on the rows those indexes (or the plain sort indexes) yield.
    # These replace the single-column indexes on the same leading columns, which their prefix
    # still serves. The price: updated_at is indexed, so an update that touches it can no longer
    # be a HOT update on PostgreSQL and writes an entry into every index below (measured in
    # bench/README.md under the ticket_api figure).
    __table_args__ = (
        # Text search in subjects (``ILIKE '%word%'``) on PostgreSQL, when the pg_trgm extension
        # could be installed (a trusted extension since PostgreSQL 13: no superuser needed);
        # without it the search still works, by reading the rows. Not on SQLite.
        Index("ix_tickets_subject_trgm", "subject", postgresql_using="gin",
              postgresql_ops={"subject": "gin_trgm_ops"},
              info={"requires_extension": "pg_trgm"}).ddl_if(dialect="postgresql"),
        Index("ix_tickets_updated", "updated_at", "id"),
        Index("ix_tickets_created", "created_at", "id"),
        Index("ix_tickets_status_updated", "status", "updated_at", "id"),
        Index("ix_tickets_queue_updated", "queue", "updated_at", "id"),
        Index("ix_tickets_assignee_updated", "assignee", "updated_at", "id"),
        Index("ix_tickets_contact_updated", "contact_id", "updated_at", "id"),
    )


class TicketMessage(Base):
    """One entry of a ticket's timeline: an inbound message, a reply we sent, or an internal note."""

    __tablename__ = "ticket_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    # The intake row this message came from; unique, so routing the same row twice adds nothing.
    intake_id: Mapped[int | None] = mapped_column(ForeignKey("intake.id"), unique=True)
    direction: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(20))
    sender: Mapped[str] = mapped_column(String(320), default="")
    recipients: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    full_text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    message_id: Mapped[str | None] = mapped_column(String(998))
    # The routing Decision (JSON) for inbound messages.
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Who did it: an agent's email, ``customer``, ``system`` or ``rules`` (None on older rows).
    actor: Mapped[str | None] = mapped_column(String(320))
    # For EVENT entries: what changed, e.g. {"type": "status", "from": "new", "to": "open"}.
    event: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    ticket: Mapped[Ticket] = relationship(back_populates="messages")

    __table_args__ = (Index("ix_ticket_messages_ticket", "ticket_id", "id"),)


class ThreadKey(Base):
    """Every key that ties a future message to a ticket.

    ``mid:<a@b>`` for each Message-ID we received, sent, or saw referenced (so a reply that arrives
    before its parent still finds the thread); ``conv:...`` for channel conversation keys. The
    primary key is what serialises two workers racing to open a ticket for one conversation: the
    loser's insert fails and it retries, now finding the winner's ticket.
    """

    __tablename__ = "thread_keys"

    key: Mapped[str] = mapped_column(String(1000), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntakeRow(Base):
    """The intake log: one row per inbound message, the source of truth for what arrived."""

    __tablename__ = "intake"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(1000))
    received_at: Mapped[datetime]
    logged_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default=IntakeState.PENDING.value)
    # The Envelope as JSON; NULL for a quarantined payload that never became one.
    envelope: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(200), default="")  # e.g. smtp, imap:support
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    routed_at: Mapped[datetime | None]
    # Last time the sweeper re-enqueued this row (so one sweep does not repeat the last one).
    swept_at: Mapped[datetime | None]
    # How often the sweeper re-enqueued it: not failures (``attempts`` counts those).
    sweeps: Mapped[int] = mapped_column(Integer, default=0)
    # What the transport knew beside the raw bytes (SMTP RCPT TO, an HTTP content type): a
    # replay parses the payload with it exactly as intake did.
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_intake_channel_external_id"),
        Index("ix_intake_state_logged", "state", "logged_at"),
    )


class OutboxRow(Base):
    """A message to send, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    channel: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(20))  # ack | reply | notify
    recipient: Mapped[str] = mapped_column(String(320))
    # The key a resend carries, chosen by the channel's composer: our Message-ID for email, a
    # key of our own for Twilio and Slack. Delivery reports find their row by it (or provider_id).
    idempotency_key: Mapped[str] = mapped_column(String(998), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    # The process (``ProcessHeartbeat.id``) that claimed the row: a claim of a dead process is
    # released as soon as its heartbeat stops, not after the whole lease.
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    provider_id: Mapped[str | None] = mapped_column(String(300), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_state_due", "state", "next_attempt_at"),
        Index("ix_outbox_contact_kind_created", "contact_id", "kind", "created_at"),
    )


class QueueCursor(Base):
    """Round-robin position per queue; its row lock serialises concurrent assignments."""

    __tablename__ = "queue_cursors"

    queue: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


# --- per-channel intake state ---------------------------------------------------------------------
class ChannelCursor(Base):
    """How far one stream of a channel has been imported (an IMAP folder, a provider's event feed).

    ``position`` counts within an ``epoch`` (for IMAP: the account and the folder's UIDVALIDITY):
    it never goes back within one, and a new epoch starts it over. The intake log's unique key
    makes a re-import after a reset harmless.
    """

    __tablename__ = "channel_cursors"

    stream: Mapped[str] = mapped_column(String(700), primary_key=True)  # e.g. imap:support/INBOX
    epoch: Mapped[str] = mapped_column(String(700), default="")
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChannelLease(Base):
    """Who works a channel resource right now (one poller per mailbox across machines)."""

    __tablename__ = "channel_leases"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # e.g. imap:support
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessHeartbeat(Base):
    """A live process that claims work (outbox rows): it beats every few seconds while it runs."""

    __tablename__ = "process_heartbeats"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid:random
    beat_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)


__all__ += ["ChannelCursor", "ChannelLease", "ProcessHeartbeat"]


# --- agents -----------------------------------------------------------------------------------------
class Role(StrEnum):
    AGENT = "agent"  # works tickets
    ADMIN = "admin"  # also manages agents and reads reports


class Agent(Base):
    """A person (or an integration) who works tickets. The one source of truth for who is an
    agent: the rules file's queue ``agents:`` lists and assignment refer to these by email."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased
    role: Mapped[str] = mapped_column(String(16), default=Role.AGENT.value)
    teams: Mapped[list[Any]] = mapped_column(default=list)  # the queues they work
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An agent's API token, stored as a SHA-256 hash: the token itself is shown once.

    ``prefix`` (the token's first characters) is what listings and revocation name; it is not
    secret, and the hash is only compared once the prefix found the row.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class TicketLink(Base):
    """Two tickets that belong together: ``related`` (an agent linked them), ``merged`` (the
    ticket was merged into the other), ``follow_up`` (a message on a closed ticket opened it)."""

    __tablename__ = "ticket_links"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="related")
    created_by: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # The primary key finds the links a ticket made; this finds the links made to it (a ticket
    # shows both, e.g. the tickets merged into it).
    __table_args__ = (Index("ix_ticket_links_other", "other_id"),)


__all__ += ["Agent", "ApiToken", "Role", "TicketLink"]
