"""Leases: one holder per named channel resource at a time, across processes and machines.

Works the same on SQLite and PostgreSQL: an insert that ignores a conflict, then a conditional
update whose row count says who won. No row locks are held between statements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tickets.db import Database
from tickets.models import ChannelLease, utcnow

__all__ = ["Lease", "LeaseLost"]


class LeaseLost(Exception):
    """Another process holds the lease now; stop touching what it guards."""


class Lease:
    """One holder per named resource at a time, across processes and machines (for IMAP: one
    poller per mailbox; ``name`` is ``imap:<mailbox>``).

    ``acquire`` takes the lease when nobody holds it, when it has expired, or when we hold it
    already (which renews it). The holder renews it every third of its time to live; a poller that
    stops renewing (crashed, cut off) loses it once ``expires_at`` passes, and a standby poller on
    another machine takes over. Expiry uses the pollers' own clocks: keep them in sync (NTP);
    a few seconds of skew only shift the takeover.

    The lease keeps two pollers from working one mailbox at once; it is not what makes the import
    exactly-once. Should both ever work at once (a holder stalled past its expiry), the intake
    log's unique key still turns every second import into a dropped duplicate.
    """

    def __init__(
        self,
        db: Database,
        mailbox: str,
        holder: str,
        *,
        ttl: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.mailbox = mailbox
        self.holder = holder
        self.ttl = ttl
        self.clock = clock
        self._valid_until = 0.0  # time.monotonic() until which we know we hold it
        self._renewed_at = 0.0

    @property
    def held(self) -> bool:
        """True while the last successful acquire or renew has not run out (by our own clock)."""
        return time.monotonic() < self._valid_until

    @property
    def renew_due(self) -> bool:
        return time.monotonic() - self._renewed_at >= self.ttl / 3

    def acquire(self) -> bool:
        """Take or renew the lease; False when another poller holds it."""
        started = time.monotonic()
        now = self.clock()
        expires = now + timedelta(seconds=self.ttl)
        dialect = sqlite if self.db.is_sqlite else postgresql
        with self.db.write() as session:
            inserted = session.execute(
                dialect.insert(ChannelLease)
                .values(name=self.mailbox, holder=self.holder, expires_at=expires, acquired_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
                .returning(ChannelLease.name)
            ).scalar_one_or_none()
            won = inserted is not None
            if not won:
                renewed = _rowcount(session.execute(
                    update(ChannelLease)
                    .where(ChannelLease.name == self.mailbox, ChannelLease.holder == self.holder)
                    .values(expires_at=expires)
                ))
                won = renewed == 1
                if not won:
                    taken = _rowcount(session.execute(
                        update(ChannelLease)
                        .where(ChannelLease.name == self.mailbox, ChannelLease.expires_at < now)
                        .values(holder=self.holder, expires_at=expires, acquired_at=now)
                    ))
                    won = taken == 1
        if won:
            # Count from before the round trip: we may believe we hold it a little less long
            # than the database says, never longer.
            self._valid_until = started + self.ttl
            self._renewed_at = started
        else:
            self._valid_until = 0.0
        return won

    def renew(self) -> None:
        """Renew the lease we hold; ``LeaseLost`` when another poller has it now."""
        if not self.acquire_if_ours():
            raise LeaseLost(f"the lease on mailbox {self.mailbox!r} passed to {self.holder_now() or 'nobody'}")

    def renew_if_due(self) -> None:
        if self.renew_due or not self.held:
            self.renew()

    def acquire_if_ours(self) -> bool:
        """Renew only if we still hold the lease (never take one over here)."""
        started = time.monotonic()
        expires = self.clock() + timedelta(seconds=self.ttl)
        with self.db.write() as session:
            renewed = _rowcount(session.execute(
                update(ChannelLease)
                .where(ChannelLease.name == self.mailbox, ChannelLease.holder == self.holder)
                .values(expires_at=expires)
            ))
        if renewed == 1:
            self._valid_until = started + self.ttl
            self._renewed_at = started
            return True
        self._valid_until = 0.0
        return False

    def release(self) -> None:
        """Give the lease up now (a clean stop), so a standby poller need not wait for expiry."""
        self._valid_until = 0.0
        with self.db.write() as session:
            session.execute(
                delete(ChannelLease).where(ChannelLease.name == self.mailbox, ChannelLease.holder == self.holder)
            )

    def holder_now(self) -> str | None:
        """Who holds the lease (expired or not), for logs and ``channels check``."""
        with self.db.read() as session:
            row = session.execute(select(ChannelLease).where(ChannelLease.name == self.mailbox)).scalar_one_or_none()
            if row is None:
                return None
            return row.holder

    @staticmethod
    def holders(db: Database) -> dict[str, tuple[str, datetime]]:
        """Every mailbox's lease holder and expiry."""
        with db.read() as session:
            rows = session.execute(select(ChannelLease)).scalars()
            return {row.name: (row.holder, row.expires_at) for row in rows}


def _rowcount(result: object) -> int:
    """Rows an UPDATE matched (SQLite and PostgreSQL both report it exactly)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
