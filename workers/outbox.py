"""The outbox dispatcher: sends outbox rows once, records what the provider said.

A row moves ``pending`` → ``sending`` (claimed by exactly one dispatcher, by a conditional
update) → ``sent`` with the provider's id. A failure puts it back to ``pending`` with an
exponential backoff, or ``failed`` when the error is permanent or attempts run out. A dispatcher
that dies between sending and recording leaves the row ``sending``; the sweeper hands it out
again as soon as the claiming process's heartbeat stops (``workers.heartbeat``: within
``OMNIDESK_PROCESS_DEAD_SECONDS`` plus one sweep interval; a released claim skips the sweep
grace), or after the whole lease when the claimer is alive but stuck. For email that resend carries the same Message-ID (the row's
idempotency key), so receiving systems drop the copy; Twilio and Slack senders reconcile by the
recorded idempotency key first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select, true, update

from tickets.db import Database
from tickets.models import OutboxRow, OutboxState, ProcessHeartbeat, table_of, utcnow
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError

__all__ = ["OutboxDispatcher", "OutboxMessage", "Sender"]

log = logging.getLogger(__name__)

_outbox = table_of(OutboxRow)
# Claim a due row for this dispatcher and read what sending needs, in one statement.
_CLAIM = (
    update(_outbox)
    .where(
        _outbox.c.id == bindparam("oid"),
        _outbox.c.state == OutboxState.PENDING.value,
        _outbox.c.next_attempt_at <= bindparam("now"),
    )
    .values(state=OutboxState.SENDING.value, claimed_at=bindparam("now"), claimed_by=bindparam("by"),
            attempts=_outbox.c.attempts + 1)
    .returning(_outbox.c.channel, _outbox.c.kind, _outbox.c.recipient, _outbox.c.idempotency_key,
               _outbox.c.payload, _outbox.c.attempts, _outbox.c.ticket_id)
)
_FINISH = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("oid"))
    .values(
        state=bindparam("state"),
        provider_id=bindparam("provider_id"),
        last_error=bindparam("last_error"),
        sent_at=bindparam("sent_at"),
    )
)


@dataclass(frozen=True)
class OutboxMessage:
    """What a sender needs of an outbox row (detached from the session)."""

    id: int
    channel: str
    kind: str
    recipient: str
    # The key a resend carries: our Message-ID for email (the sender sets it as the header).
    idempotency_key: str
    payload: Mapping[str, object]
    attempts: int
    ticket_id: int | None = None

    @property
    def message_id(self) -> str:
        """The email name of the idempotency key."""
        return self.idempotency_key


class Sender(Protocol):
    def send(self, message: OutboxMessage) -> str:
        """Hand the message to the provider; return the provider's id for it.

        Raise TemporaryDeliveryError to retry later, PermanentDeliveryError to give up.
        """
        ...


class OutboxDispatcher:
    def __init__(
        self,
        db: Database,
        senders: Mapping[str, Sender],
        *,
        max_attempts: int = 8,
        base_backoff: timedelta = timedelta(seconds=5),
        max_backoff: timedelta = timedelta(minutes=30),
        lease: timedelta = timedelta(minutes=2),
        dead_after: timedelta = timedelta(seconds=20),
        process_id: str = "",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.lease = lease
        self.dead_after = dead_after
        # The heartbeat id of this process (``workers.heartbeat``); claims carry it.
        self.process_id = process_id
        self.clock = clock

    def deliver(self, outbox_id: int) -> str:
        """Try to send one row; returns the row's state afterwards ('' when not ours to send)."""
        now = self.clock()
        with self.db.write_connection() as conn:
            row = conn.execute(_CLAIM, {"oid": outbox_id, "now": now, "by": self.process_id or None}).first()
        if row is None:
            return ""
        message = OutboxMessage(
            id=outbox_id,
            channel=row.channel,
            kind=row.kind,
            recipient=row.recipient,
            idempotency_key=row.idempotency_key,
            payload=dict(row.payload),
            attempts=row.attempts,
            ticket_id=row.ticket_id,
        )
        sender = self.senders.get(message.channel)
        try:
            if sender is None:
                raise PermanentDeliveryError(f"no sender configured for channel {message.channel!r}")
            provider_id = sender.send(message)
        except PermanentDeliveryError as exc:
            return self._finish(message, OutboxState.FAILED, error=str(exc))
        except TemporaryDeliveryError as exc:
            return self._retry_later(message, str(exc))
        except Exception as exc:  # an unexpected bug must not strand the row in 'sending'
            log.exception("outbox %s: sender crashed", message.id)
            return self._retry_later(message, f"{exc.__class__.__name__}: {exc}")
        return self._finish(message, OutboxState.SENT, provider_id=provider_id)

    def _finish(
        self, message: OutboxMessage, state: OutboxState, *, provider_id: str | None = None, error: str | None = None
    ) -> str:
        values = {
            "oid": message.id,
            "state": state.value,
            "provider_id": provider_id,
            "last_error": error,
            "sent_at": self.clock() if state is OutboxState.SENT else None,
        }
        with self.db.write_connection() as conn:
            conn.execute(_FINISH, values)
            if state is OutboxState.FAILED and message.ticket_id is not None:
                # The agent must see that the customer did not get it, and why.
                from tickets.commands import add_message
                from tickets.models import Direction

                add_message(conn, message.ticket_id, direction=Direction.EVENT, channel=message.channel,
                            text=f"Delivery of a {message.kind} to {message.recipient} failed: {error}")
        if state is OutboxState.FAILED:
            log.error("outbox %s to %s failed for good: %s", message.id, message.recipient, error)
        return state.value

    def _retry_later(self, message: OutboxMessage, error: str) -> str:
        if message.attempts >= self.max_attempts:
            return self._finish(message, OutboxState.FAILED, error=f"gave up after {message.attempts} attempts: {error}")
        delay = min(self.base_backoff * (2 ** (message.attempts - 1)), self.max_backoff)
        with self.db.write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == message.id)
                .values(state=OutboxState.PENDING.value, next_attempt_at=self.clock() + delay, last_error=error)
            )
        log.warning("outbox %s to %s: attempt %d failed (%s); next in %s", message.id,
                    message.recipient, message.attempts, error, delay)
        return OutboxState.PENDING.value

    # --- the sweeper's side ----------------------------------------------------------------
    def due(self, *, grace: timedelta = timedelta(0), limit: int = 500) -> list[int]:
        """Rows to hand out: claims just released, then rows due at least ``grace`` ago.

        The grace keeps the sweeper off rows the routing job has just enqueued itself. A released
        claim is not such a row: its sending was lost with its claimer, so it is handed out at
        once. (Waiting out the grace from its original due time would hold an acknowledgement
        claimed by a killed worker for the grace, 30 s by default, instead of the dead-process
        time the heartbeat promises.)
        """
        now = self.clock()
        alive = select(ProcessHeartbeat.id).where(ProcessHeartbeat.beat_at >= now - self.dead_after)
        sending = OutboxRow.state == OutboxState.SENDING.value
        with self.db.write() as session:
            # At once when the claiming process stopped beating (killed, its machine gone)...
            dead = session.execute(
                update(OutboxRow)
                .where(
                    sending,
                    OutboxRow.claimed_by.is_not(None),
                    OutboxRow.claimed_at < now - self.dead_after,
                    OutboxRow.claimed_by.not_in(alive),
                )
                .values(state=OutboxState.PENDING.value,
                        last_error="the process sending it stopped (no heartbeat); retrying")
                .returning(OutboxRow.id)
            ).scalars().all()
            # ...else when the lease ran out: the claimer beats but its sender is stuck.
            expired = session.execute(
                update(OutboxRow)
                .where(sending, OutboxRow.claimed_at < now - self.lease)
                .values(
                    state=OutboxState.PENDING.value,
                    last_error=f"still sending after the {self.lease.total_seconds():g} s lease; retrying",
                )
                .returning(OutboxRow.id)
            ).scalars().all()
            # Every released row goes out now, whatever ``limit`` says: each is a delivery
            # already late. The limit bounds the ordinary due rows.
            released = [*dead, *expired]
            room = limit - len(released)
            if room <= 0:
                return released
            rows = session.execute(
                select(OutboxRow.id)
                .where(
                    OutboxRow.state == OutboxState.PENDING.value,
                    OutboxRow.next_attempt_at <= now - grace,
                    OutboxRow.id.not_in(released) if released else true(),
                )
                .order_by(OutboxRow.next_attempt_at)
                .limit(room)
            )
            return released + list(rows.scalars())
