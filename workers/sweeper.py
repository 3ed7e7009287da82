"""The sweeper: whatever the broker lost, the database still knows.

Every interval it re-enqueues intake rows logged but not routed (broker down at enqueue time,
worker killed mid-job) and outbox rows that are due (retries, expired claims). About once a minute
it also runs its chores: closing tickets resolved longer than ``resolved_close_after_hours``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from intake.log import IntakeLog
from workers.outbox import OutboxDispatcher

__all__ = ["Sweeper"]

log = logging.getLogger(__name__)


@dataclass
class Sweeper:
    intake_log: IntakeLog
    dispatcher: OutboxDispatcher
    enqueue_route: Callable[[int], object]
    enqueue_deliver: Callable[[int], object]
    grace: timedelta = timedelta(seconds=30)
    # Housekeeping run at most every ``chores_every`` (closing resolved tickets, ...).
    chores: tuple[Callable[[], object], ...] = ()
    chores_every: timedelta = timedelta(seconds=60)
    _chores_at: float = field(default=float("-inf"), repr=False)

    def sweep_once(self) -> tuple[int, int]:
        """Re-enqueue what is stuck; returns (intake rows, outbox rows) handed out."""
        intake_ids = self.intake_log.unrouted(older_than=self.grace)
        for intake_id in intake_ids:
            self.enqueue_route(intake_id)
        self.intake_log.touch(intake_ids)
        outbox_ids = self.dispatcher.due(grace=self.grace)
        for outbox_id in outbox_ids:
            self.enqueue_deliver(outbox_id)
        if intake_ids or outbox_ids:
            log.info("sweeper re-enqueued %d intake and %d outbox rows", len(intake_ids), len(outbox_ids))
        self.run_chores()
        return len(intake_ids), len(outbox_ids)

    def run_chores(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._chores_at < self.chores_every.total_seconds():
            return
        self._chores_at = now
        for chore in self.chores:
            try:
                chore()
            except Exception:
                log.exception("sweeper chore %s failed", getattr(chore, "__name__", chore))

    def run(self, stop: threading.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                self.sweep_once()
            except Exception:  # the database may be briefly away; try again next round
                log.exception("sweep failed")
            stop.wait(interval)
