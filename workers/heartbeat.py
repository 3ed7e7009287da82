"""Process heartbeats: how the sweeper tells a dead claimer from a slow one.

Every process that claims outbox rows (a worker) beats every ``interval`` seconds into
``process_heartbeats``; its claims carry its id. A claim whose process has not beaten for
``OMNIDESK_PROCESS_DEAD_SECONDS`` is released by the next sweep: after ``kill -9`` a claimed
acknowledgement waits at most that long plus one sweep interval, not the whole outbox lease.
A clean stop removes the row at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from tickets.db import Database
from tickets.models import ProcessHeartbeat, utcnow

__all__ = ["Heartbeat", "process_id"]

log = logging.getLogger(__name__)


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    def __init__(self, db: Database, *, interval: float = 5.0, ident: str | None = None) -> None:
        self.db = db
        self.interval = interval
        self.id = ident or process_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        now = utcnow()
        dialect = sqlite if self.db.is_sqlite else postgresql
        with self.db.write() as session:
            statement = dialect.insert(ProcessHeartbeat).values(id=self.id, beat_at=now, started_at=now)
            session.execute(statement.on_conflict_do_update(index_elements=["id"], set_={"beat_at": now}))

    def forget_dead(self, older_than: timedelta) -> None:
        with self.db.write() as session:
            session.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.beat_at < utcnow() - older_than))

    def start(self) -> Heartbeat:
        self.beat()

        def run() -> None:
            beats = 0
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                    beats += 1
                    if beats % 100 == 0:
                        self.forget_dead(timedelta(days=1))
                except Exception:  # the database may be briefly away; beat again next round
                    log.warning("heartbeat failed", exc_info=True)

        self._thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.db.write() as session:
                session.execute(delete(ProcessHeartbeat).where(ProcessHeartbeat.id == self.id))
        except Exception:
            log.warning("could not remove the heartbeat row", exc_info=True)
