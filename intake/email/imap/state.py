"""What the IMAP pollers keep in the database: folder checkpoints (and, from the store, leases).

Checkpoints work the same on SQLite and PostgreSQL: an insert that ignores a conflict, then an
update of the row read for update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from tickets.db import Database
from tickets.leases import Lease, LeaseLost
from tickets.models import ChannelCursor, utcnow

__all__ = ["Checkpoint", "Checkpoints", "Lease", "LeaseLost"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    account: str
    uidvalidity: int
    last_uid: int


class Checkpoints:
    """Per (mailbox, folder): the UIDVALIDITY and the last UID whose message is safely imported.

    Kept in the store's generic ``channel_cursors``: stream ``imap:<mailbox>/<folder>``, epoch
    ``<account>#<uidvalidity>`` (UIDs mean something only within both), position the last UID.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _stream(mailbox: str, folder: str) -> str:
        return f"imap:{mailbox}/{folder}"

    def get(self, mailbox: str, folder: str) -> Checkpoint | None:
        with self.db.read() as session:
            row = session.get(ChannelCursor, self._stream(mailbox, folder))
            if row is None:
                return None
            account, _, uidvalidity = row.epoch.rpartition("#")
            return Checkpoint(account, int(uidvalidity or 0), int(row.position))

    def save(self, mailbox: str, folder: str, *, account: str, uidvalidity: int, last_uid: int) -> None:
        """Record progress. For the same account and UIDVALIDITY the last UID never goes back
        (a slower poller that lost its lease cannot undo the work of the one that took over)."""
        dialect = sqlite if self.db.is_sqlite else postgresql
        now = utcnow()
        stream = self._stream(mailbox, folder)
        epoch = f"{account}#{uidvalidity}"
        with self.db.write() as session:
            inserted = session.execute(
                dialect.insert(ChannelCursor)
                .values(stream=stream, epoch=epoch, position=last_uid, updated_at=now)
                .on_conflict_do_nothing(index_elements=["stream"])
                .returning(ChannelCursor.stream)
            ).scalar_one_or_none()
            if inserted is not None:
                return
            row = session.execute(
                select(ChannelCursor).where(ChannelCursor.stream == stream).with_for_update()
            ).scalar_one()
            if row.epoch == epoch:
                row.position = max(int(row.position), last_uid)
            else:
                row.epoch, row.position = epoch, last_uid
            row.updated_at = now

    def forget(self, mailbox: str, folder: str) -> None:
        with self.db.write() as session:
            session.execute(delete(ChannelCursor).where(ChannelCursor.stream == self._stream(mailbox, folder)))
