"""What the IMAP pollers keep in the database: folder checkpoints and poller leases.

Both work the same on SQLite and PostgreSQL: an insert that ignores a conflict, then a conditional
update whose row count says who won. No row locks are held between statements.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tickets.db import Database
from tickets.models import ImapCheckpoint, ImapLease, utcnow

__all__ = ["Checkpoint", "Checkpoints", "Lease", "LeaseLost"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    account: str
    uidvalidity: int
    last_uid: int


class Checkpoints:
    """Per (mailbox, folder): the UIDVALIDITY and the last UID whose message is safely imported."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, mailbox: str, folder: str) -> Checkpoint | None:
        with self.db.read() as session:
            row = session.get(ImapCheckpoint, (mailbox, folder))
            if row is None:
                return None
            return Checkpoint(row.account, int(row.uidvalidity), int(row.last_uid))

    def save(self, mailbox: str, folder: str, *, account: str, uidvalidity: int, last_uid: int) -> None:
        """Record progress. For the same account and UIDVALIDITY the last UID never goes back
        (a slower poller that lost its lease cannot undo the work of the one that took over)."""
        dialect = sqlite if self.db.is_sqlite else postgresql
        now = utcnow()
        with self.db.write() as session:
            inserted = session.execute(
                dialect.insert(ImapCheckpoint)
                .values(mailbox=mailbox, folder=folder, account=account, uidvalidity=uidvalidity,
                        last_uid=last_uid, updated_at=now)
                .on_conflict_do_nothing(index_elements=["mailbox", "folder"])
                .returning(ImapCheckpoint.mailbox)
            ).scalar_one_or_none()
            if inserted is not None:
                return
            row = session.execute(
                select(ImapCheckpoint).where(ImapCheckpoint.mailbox == mailbox, ImapCheckpoint.folder == folder)
                .with_for_update()
            ).scalar_one()
            if row.account == account and int(row.uidvalidity) == uidvalidity:
                row.last_uid = max(int(row.last_uid), last_uid)
            else:
                row.account, row.uidvalidity, row.last_uid = account, uidvalidity, last_uid
            row.updated_at = now

    def forget(self, mailbox: str, folder: str) -> None:
        with self.db.write() as session:
            session.execute(
                delete(ImapCheckpoint).where(ImapCheckpoint.mailbox == mailbox, ImapCheckpoint.folder == folder)
            )


class LeaseLost(Exception):
    """Another poller holds the mailbox now; stop touching it."""


class Lease:
    """One poller per mailbox at a time, across processes and machines.

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
                dialect.insert(ImapLease)
                .values(mailbox=self.mailbox, holder=self.holder, expires_at=expires, acquired_at=now)
                .on_conflict_do_nothing(index_elements=["mailbox"])
                .returning(ImapLease.mailbox)
            ).scalar_one_or_none()
            won = inserted is not None
            if not won:
                renewed = _rowcount(session.execute(
                    update(ImapLease)
                    .where(ImapLease.mailbox == self.mailbox, ImapLease.holder == self.holder)
                    .values(expires_at=expires)
                ))
                won = renewed == 1
                if not won:
                    taken = _rowcount(session.execute(
                        update(ImapLease)
                        .where(ImapLease.mailbox == self.mailbox, ImapLease.expires_at < now)
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
                update(ImapLease)
                .where(ImapLease.mailbox == self.mailbox, ImapLease.holder == self.holder)
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
                delete(ImapLease).where(ImapLease.mailbox == self.mailbox, ImapLease.holder == self.holder)
            )

    def holder_now(self) -> str | None:
        """Who holds the lease (expired or not), for logs and ``channels check``."""
        with self.db.read() as session:
            row = session.execute(select(ImapLease).where(ImapLease.mailbox == self.mailbox)).scalar_one_or_none()
            if row is None:
                return None
            return row.holder

    @staticmethod
    def holders(db: Database) -> dict[str, tuple[str, datetime]]:
        """Every mailbox's lease holder and expiry."""
        with db.read() as session:
            rows = session.execute(select(ImapLease)).scalars()
            return {row.mailbox: (row.holder, row.expires_at) for row in rows}


def _rowcount(result: object) -> int:
    """Rows an UPDATE matched (SQLite and PostgreSQL both report it exactly)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
