"""The intake log: every inbound message is stored here before its source is acknowledged.

``IntakeLog.accept`` writes the raw bytes to the blob store and one row to the ``intake`` table,
unique on ``(channel, external_id)``, then hands the row id to ``on_logged`` (which enqueues the
routing job). Only when ``accept`` returns may an adapter acknowledge its source. A redelivery of
the same message hits the unique key and is reported as a duplicate, to be acknowledged and
dropped. If enqueueing fails the row stays ``pending`` and the sweeper enqueues it later: the log,
not the broker, is the source of truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from intake.blobs import BlobStore, sha256_hex
from intake.envelope import Envelope
from intake.errors import IntakeUnavailable
from tickets.db import Database
from tickets.models import IntakeRow, IntakeState, table_of, utcnow

__all__ = ["Accepted", "IntakeLog"]

log = logging.getLogger(__name__)

_intake = table_of(IntakeRow)
_INSERT_COLUMNS = (
    "channel", "external_id", "received_at", "state", "envelope", "source", "error", "raw_sha256",
    "logged_at", "attempts", "sweeps", "meta",
)
# Built once per dialect (keyed by "is SQLite"): a duplicate delivery inserts nothing and returns
# no id, which is how a redelivery is recognised without an exception.
_INSERT = {
    is_sqlite: dialect.insert(_intake)
    .values({name: bindparam(name) for name in _INSERT_COLUMNS})
    .on_conflict_do_nothing(index_elements=["channel", "external_id"])
    .returning(_intake.c.id)
    for is_sqlite, dialect in ((True, sqlite), (False, postgresql))
}
_FIND = select(_intake.c.id).where(
    _intake.c.channel == bindparam("channel"), _intake.c.external_id == bindparam("external_id")
)


@dataclass(frozen=True)
class Accepted:
    intake_id: int
    duplicate: bool = False
    quarantined: bool = False


class IntakeLog:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        on_logged: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.on_logged = on_logged

    def accept(
        self, envelope: Envelope, raw: bytes, *, source: str = "", meta: dict[str, object] | None = None
    ) -> Accepted:
        """Log one parsed message. Raises ``IntakeUnavailable`` when it could not be stored.

        ``meta``: what the transport knew beside the bytes (SMTP RCPT TO, an HTTP content type),
        kept so a replay parses the payload exactly as intake did.
        """
        values: dict[str, object] = {
            "channel": envelope.channel,
            "external_id": envelope.external_id,
            "received_at": envelope.received_at,
            "state": IntakeState.PENDING.value,
            "envelope": envelope.model_dump(mode="json"),
            "source": source,
            "meta": meta or None,
        }
        return self._insert(values, raw, enqueue=True)

    def quarantine(
        self,
        raw: bytes,
        *,
        channel: str,
        reason: str,
        received_at: datetime,
        source: str = "",
        external_id: str | None = None,
        meta: dict[str, object] | None = None,
    ) -> Accepted:
        """Log a payload that cannot become an Envelope: raw kept, reason recorded, not routed."""
        values: dict[str, object] = {
            "channel": channel,
            "external_id": external_id or f"sha256:{sha256_hex(raw)}",
            "received_at": received_at,
            "state": IntakeState.QUARANTINED.value,
            "envelope": None,
            "source": source,
            "error": reason[:4000],
            "meta": meta or None,
        }
        log.warning("quarantined a %s message from %s: %s", channel, source or "?", reason)
        return self._insert(values, raw, enqueue=False, quarantined=True)

    def _insert(
        self, values: dict[str, object], raw: bytes, *, enqueue: bool, quarantined: bool = False
    ) -> Accepted:
        try:
            values["raw_sha256"] = self.blobs.put(raw)
            row: dict[str, object] = dict.fromkeys(_INSERT_COLUMNS)
            row.update(values)
            row.update(logged_at=utcnow(), attempts=0, sweeps=0)
            with self.db.write_connection() as conn:
                new_id = conn.execute(_INSERT[self.db.is_sqlite], row).scalar_one_or_none()
                if new_id is None:
                    existing = conn.execute(
                        _FIND, {"channel": values["channel"], "external_id": values["external_id"]}
                    ).scalar_one()
        except (SQLAlchemyError, OSError) as exc:
            raise IntakeUnavailable(f"intake log could not commit: {exc.__class__.__name__}: {exc}") from exc
        if new_id is None:
            log.info("duplicate %s message %s dropped", values["channel"], values["external_id"])
            return Accepted(existing, duplicate=True)
        if enqueue:
            self.enqueue(new_id)
        return Accepted(new_id, quarantined=quarantined)

    def enqueue(self, intake_id: int) -> None:
        """Hand a logged row to routing; a failure here loses nothing (the sweeper retries)."""
        if self.on_logged is None:
            return
        try:
            self.on_logged(intake_id)
        except Exception:
            log.exception("could not enqueue intake %s; the sweeper will retry", intake_id)

    def record_failure(self, intake_id: int, error: str, *, quarantine_after: int) -> bool:
        """Count a failed routing attempt; quarantine the row when it keeps failing.

        Returns True when the row was quarantined, so one poisoned message cannot block or
        loop forever while the messages behind it flow.
        """
        with self.db.write() as session:
            row = session.get(IntakeRow, intake_id)
            if row is None or row.state != IntakeState.PENDING.value:
                return False
            row.attempts += 1
            row.error = error[:4000]
            if row.attempts >= quarantine_after:
                row.state = IntakeState.QUARANTINED.value
                log.error("intake %s quarantined after %d failed routing attempts: %s",
                          intake_id, row.attempts, error)
                return True
        return False

    # --- the sweeper's side ----------------------------------------------------------------
    def unrouted(self, *, older_than: timedelta, limit: int = 500) -> list[int]:
        """Rows logged at least ``older_than`` ago and still not routed."""
        cutoff = utcnow() - older_than
        with self.db.read() as session:
            rows = session.execute(
                select(IntakeRow.id)
                .where(
                    IntakeRow.state == IntakeState.PENDING.value,
                    IntakeRow.logged_at <= cutoff,
                    or_(IntakeRow.swept_at.is_(None), IntakeRow.swept_at <= cutoff),
                )
                .order_by(IntakeRow.id)
                .limit(limit)
            )
            return list(rows.scalars())

    def touch(self, intake_ids: list[int]) -> None:
        """Push the sweep clock of re-enqueued rows forward so one sweep does not repeat another.

        Counted in ``sweeps``, apart from ``attempts``: a row re-enqueued while the broker was
        away has not failed, and must not be quarantined sooner for it.
        """
        if not intake_ids:
            return
        with self.db.write() as session:
            session.execute(
                update(IntakeRow)
                .where(IntakeRow.id.in_(intake_ids), IntakeRow.state == IntakeState.PENDING.value)
                .values(swept_at=utcnow(), sweeps=IntakeRow.sweeps + 1)
            )
