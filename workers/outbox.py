"""The outbox dispatcher: sends outbox rows once, records what the provider said.

A row moves ``pending`` → ``sending`` (claimed by exactly one dispatcher, by a conditional
update) → ``sent`` with the provider's id. A failure puts it back to ``pending`` with an
exponential backoff, or ``failed`` when the error is permanent or attempts run out. A dispatcher
that dies between sending and recording leaves the row ``sending``; after a lease the sweeper
hands it out again. For email that resend carries the same Message-ID, so receiving systems
drop the copy; Twilio and Slack senders reconcile by the recorded idempotency key first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, select, update

from tickets.db import Database
from tickets.models import OutboxRow, OutboxState, table_of, utcnow
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
    .values(state=OutboxState.SENDING.value, claimed_at=bindparam("now"), attempts=_outbox.c.attempts + 1)
    .returning(_outbox.c.channel, _outbox.c.kind, _outbox.c.recipient, _outbox.c.message_id,
               _outbox.c.payload, _outbox.c.attempts)
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
    message_id: str
    payload: Mapping[str, object]
    attempts: int


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
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self.lease = lease
        self.clock = clock

    def deliver(self, outbox_id: int) -> str:
        """Try to send one row; returns the row's state afterwards ('' when not ours to send)."""
        now = self.clock()
        with self.db.write_connection() as conn:
            row = conn.execute(_CLAIM, {"oid": outbox_id, "now": now}).first()
        if row is None:
            return ""
        message = OutboxMessage(
            id=outbox_id,
            channel=row.channel,
            kind=row.kind,
            recipient=row.recipient,
            message_id=row.message_id,
            payload=dict(row.payload),
            attempts=row.attempts,
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
        """Rows due at least ``grace`` ago, after releasing claims older than the lease.

        The grace keeps the sweeper off rows the routing job has just enqueued itself.
        """
        now = self.clock()
        with self.db.write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.state == OutboxState.SENDING.value, OutboxRow.claimed_at < now - self.lease)
                .values(state=OutboxState.PENDING.value, last_error="claim expired; retrying")
            )
            rows = session.execute(
                select(OutboxRow.id)
                .where(
                    OutboxRow.state == OutboxState.PENDING.value,
                    OutboxRow.next_attempt_at <= now - grace,
                )
                .order_by(OutboxRow.next_attempt_at)
                .limit(limit)
            )
            return list(rows.scalars())
