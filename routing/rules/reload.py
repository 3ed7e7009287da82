"""Keep the rules in force while admins edit the file: reload on change, refuse broken files.

A running service holds a ``RulesHolder``. Workers call ``holder.get()`` per message; at most every
``check_interval`` seconds that looks at the modification time of every file the rules came from
(the rules file, a customers CSV, template files) and reloads when one changed. ``reload()`` forces
a reload; ``request_reload()`` is what a SIGHUP handler should call (it only sets a flag, since a
signal handler must not do file work). A broken file never replaces good rules: the errors are
logged loudly, ``last_error`` keeps them, and the last good rules stay in force until the file is
fixed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from routing.rules.engine import RuleSet
from routing.rules.errors import RulesError
from routing.rules.loader import load_rules

__all__ = ["RulesHolder"]

log = logging.getLogger("omnidesk.rules")

Signature = tuple[tuple[str, int, int, int] | tuple[str], ...]


def _signature(paths: Iterable[Path]) -> Signature:
    out: list[tuple[str, int, int, int] | tuple[str]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((str(path),))  # missing: a change too, once it comes back
            continue
        # mtime alone misses a rewrite within the file system's time granularity; size and inode
        # (editors that write a new file and rename it) catch most of those.
        out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class RulesHolder:
    def __init__(
        self,
        path: Path,
        *,
        check_interval: float = 2.0,
        logger: logging.Logger | None = None,
        on_change: Callable[[RuleSet], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load ``path`` now; raises RulesError when it is broken (a service must not start so)."""
        self.path = Path(path)
        self.check_interval = check_interval
        self.log = logger or log
        self.on_change = on_change
        self._clock = clock
        # Re-entrant: a SIGHUP handler calling reload() runs on the main thread, possibly while
        # that same thread is inside check(); a plain lock would deadlock there.
        self._lock = threading.RLock()
        self._rules = load_rules(self.path)
        self._signature = _signature(self._watched(self._rules))
        self._failed: Signature | None = None
        self._requested = False
        self._next_check = clock() + check_interval
        self.last_error: RulesError | None = None
        self.log.info(
            "rules loaded: %s (sha256 %s)", self._rules.summary(), self._rules.digest[:12]
        )

    @property
    def current(self) -> RuleSet:
        """The rules in force, without looking at the files."""
        return self._rules

    def get(self) -> RuleSet:
        """The rules in force, reloading first if the files changed (checked now and then)."""
        if self._requested or self._clock() >= self._next_check:
            self.check()
        return self._rules

    __call__ = get  # so a holder can be passed wherever a ``() -> RuleSet`` is expected

    def request_reload(self) -> None:
        """Ask for a reload at the next ``get()``; safe to call from a signal handler."""
        self._requested = True

    def check(self) -> bool:
        """Reload if a watched file changed since the last attempt; True when new rules loaded."""
        if not self._lock.acquire(blocking=False):
            return False  # another thread is at it; the current rules are fine meanwhile
        try:
            self._next_check = self._clock() + self.check_interval
            forced, self._requested = self._requested, False
            signature = _signature(self._watched(self._rules))
            if not forced and (signature == self._signature or signature == self._failed):
                return False
            return self._reload_locked(signature)
        finally:
            self._lock.release()

    reload_if_changed = check

    def reload(self) -> bool:
        """Reload now, whatever the files' times say; True when new rules are in force."""
        with self._lock:
            self._requested = False
            return self._reload_locked(_signature(self._watched(self._rules)))

    def _watched(self, rules: RuleSet) -> tuple[Path, ...]:
        return rules.watched or (self.path,)

    def _reload_locked(self, signature: Signature) -> bool:
        try:
            rules = load_rules(self.path)
        except RulesError as exc:
            self._failed = signature
            self.last_error = exc
            old = self._rules
            self.log.error(
                "RULES NOT RELOADED: %s is broken; the last good rules stay in force (%s, sha256 %s)."
                " Fix these %d error(s):\n%s",
                self.path,
                old.summary(),
                old.digest[:12],
                len(exc.errors),
                "\n".join(exc.errors),
            )
            return False
        old_watched = self._watched(self._rules)
        self._rules = rules
        # The times taken before loading: a write during the load shows up as a change next time.
        new_watched = self._watched(rules)
        self._signature = signature if new_watched == old_watched else _signature(new_watched)
        self._failed = None
        self.last_error = None
        self.log.info("rules reloaded: %s (sha256 %s)", rules.summary(), rules.digest[:12])
        if self.on_change is not None:
            self.on_change(rules)
        return True
