"""One IMAP mailbox folder, imported into the intake log: the poller.

The loop, per mailbox, in its own thread:

1. Hold the mailbox's lease (``state.Lease``); without it, stand by and try again later.
2. Connect, log in, SELECT the folder: its UIDVALIDITY and UIDNEXT.
3. Compare with the checkpoint (account, UIDVALIDITY, last UID). Same folder: look at UIDs above
   the last one. First run, or UIDVALIDITY changed (the folder was recreated or restored): look at
   every UID from 1 (a resync; what the intake log already holds is dropped as a duplicate by its
   unique Message-ID key, so nothing is imported twice).
4. In batches (``batch_size`` UIDs, at most ``max_batch_bytes`` of mail): FETCH ``BODY.PEEK[]``
   and INTERNALDATE (PEEK: fetching never marks anything read), hand each message to ``accept``
   (the intake log), and only after it returned: flag the accepted ones ``\\Seen`` or move them
   to ``move_to`` (MOVE when offered, else COPY + ``\\Deleted`` + UID EXPUNGE), then advance
   the checkpoint. When ``accept`` raises (the store is down), that message and the ones after it
   stay untouched on the server, and the poller backs off and tries again.
5. Wait for news: IDLE when the server offers it (preceded by a NOOP, since some servers do not
   announce mail that landed just before IDLE began; re-issued every ``idle_seconds``, well under
   the 29 minutes servers allow; a connection that dies under it is noticed by the socket timeout,
   TCP keepalive and the re-issue), else poll every ``poll_seconds``.

Any failure (login refused, connection lost, store down) is one log line naming the mailbox and
the cause, then exponential backoff (capped at ``backoff_cap``); one mailbox's trouble never
touches another's thread.

Which messages are imported: the checkpoint decides, never the ``\\Seen`` flag. Someone reading a
message in webmail before the poller saw it must not make it vanish from the help desk; so a first
run or a resync imports everything in the folder (not older than ``import_since`` when that is
set), seen or not. Messages flagged ``\\Deleted`` (waiting for an expunge) are skipped.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.imapclient import DELETED, SEEN

from intake.email.imap.settings import ImapMailbox
from intake.errors import IntakeUnavailable
from intake.email.imap.connection import (
    Capabilities,
    capabilities,
    close_quietly,
    connect,
    describe_error,
)
from intake.email.imap.state import Checkpoints, Lease, LeaseLost
from tickets.db import Database

__all__ = ["Accept", "ImapPoller", "PollerStats", "holder_id"]

log = logging.getLogger(__name__)


class Accept(Protocol):
    """``App.accept_email``: log one email durably or raise (``IntakeUnavailable``)."""

    def __call__(self, raw: bytes, recipients: list[str], received_at: datetime, *, source: str) -> Any: ...


def holder_id() -> str:
    """Who is polling, as shown in the lease table: host, process and a per-poller nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class PollerStats:
    """Counters a test, a health check or a benchmark can read (written by the poller thread)."""

    accepted: int = 0  # new intake rows (parsed or quarantined)
    duplicates: int = 0  # the intake log had them already
    quarantined: int = 0
    acknowledged: int = 0  # flagged \Seen or moved
    syncs: int = 0
    failures: int = 0  # failures in a row; 0 after a good sync
    last_error: str = ""
    resyncs: int = 0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))  # the latest causes


class _StopNow(Exception):
    """Internal: leave the session because the poller is stopping."""


class ImapPoller:
    """Imports one mailbox folder until ``stop()``; run ``run()`` in a thread of its own."""

    def __init__(
        self,
        mailbox: ImapMailbox,
        *,
        password: str,
        accept: Accept,
        db: Database,
        holder: str | None = None,
        stop_events: Sequence[threading.Event] = (),
        batch_size: int = 50,
        max_batch_bytes: int = 32 * 1024 * 1024,
        poll_seconds: float | None = None,
        idle_seconds: float | None = None,
        use_idle: bool | None = None,
        use_move: bool = True,
        lease_seconds: float = 60.0,
        standby_seconds: float | None = None,
        tick: float = 1.0,
        backoff_base: float = 2.0,
        backoff_cap: float = 300.0,
        timeout: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.mailbox = mailbox
        self._password = password
        self.accept = accept
        self.db = db
        self.holder = holder or holder_id()
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.poll_seconds = poll_seconds if poll_seconds is not None else mailbox.poll_seconds
        self.idle_seconds = idle_seconds if idle_seconds is not None else mailbox.idle_seconds
        self.use_idle = mailbox.idle if use_idle is None else use_idle
        self.use_move = use_move
        self.tick = tick
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout
        self.lease = Lease(db, f"imap:{mailbox.name}", self.holder, ttl=lease_seconds)
        self.standby_seconds = standby_seconds if standby_seconds is not None else max(tick, lease_seconds / 3)
        self.checkpoints = Checkpoints(db)
        self.account = f"{mailbox.username}@{mailbox.host}"
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._stop_events = (self._stop, *stop_events)
        # Set for observers: the poller holds the lease / is idling (waiting for news).
        self.holding = threading.Event()
        self.waiting = threading.Event()
        self._client: IMAPClient | None = None
        self._caps: Capabilities | None = None
        self._standby_logged = False

    def __repr__(self) -> str:  # never the password
        return f"<ImapPoller {self.mailbox.name} {self.mailbox.describe()}>"

    @property
    def name(self) -> str:
        return self.mailbox.name

    # --- stopping and waiting ---------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return any(event.is_set() for event in self._stop_events)

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on stop; True when stopping."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._stop.wait(min(remaining, self.tick))
        return True

    def _check_stop(self) -> None:
        if self.stopping:
            raise _StopNow()

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Poll until stopped. Never raises: every failure is logged and retried with backoff."""
        log.info("IMAP mailbox %s: starting (%s) as %s", self.name, self.mailbox.describe(), self.holder)
        try:
            while not self.stopping:
                try:
                    if not self._take_lease():
                        self._wait(self.standby_seconds)
                        continue
                    self._session()
                except _StopNow:
                    break
                except LeaseLost as exc:
                    self.holding.clear()
                    log.warning("IMAP mailbox %s: %s; standing by", self.name, exc)
                except Exception as exc:  # noqa: BLE001 - one mailbox's failure must not end its thread
                    self._failed(exc)
        finally:
            self.waiting.clear()
            self.holding.clear()
            try:
                self.lease.release()
            except Exception as exc:  # noqa: BLE001
                log.warning("IMAP mailbox %s: could not release the lease: %s", self.name, exc)
            log.info("IMAP mailbox %s: stopped", self.name)

    def _take_lease(self) -> bool:
        if self.lease.acquire():
            if not self.holding.is_set():
                log.info("IMAP mailbox %s: lease taken by %s", self.name, self.holder)
            self.holding.set()
            self._standby_logged = False
            return True
        self.holding.clear()
        if not self._standby_logged:
            log.info("IMAP mailbox %s: polled by %s; standing by", self.name, self.lease.holder_now() or "another poller")
            self._standby_logged = True
        return False

    def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        cause = str(exc) if isinstance(exc, _Unstored) else describe_error(exc, self.mailbox)
        self.stats.last_error = cause
        self.stats.errors.append(cause)
        delay = self.backoff_delay(self.stats.failures)
        log.warning(
            "IMAP mailbox %s: %s; retry %d in %.0f s", self.name, cause, self.stats.failures, delay
        )
        if not isinstance(exc, (OSError, _Unstored)) and not _is_imap_error(exc):
            log.debug("IMAP mailbox %s: details of the failure", self.name, exc_info=exc)
        self._wait(delay)

    def backoff_delay(self, failures: int) -> float:
        """Exponential backoff with a little jitter (pollers of one server do not retry in step)."""
        raw = self.backoff_base * (2 ** min(max(failures - 1, 0), 30))
        return float(min(self.backoff_cap, raw) * random.uniform(0.85, 1.0))

    # --- one connection ---------------------------------------------------------------------------
    def _session(self) -> None:
        client = connect(self.mailbox, self._password, timeout=self.timeout)
        self._client = client
        try:
            self._caps = capabilities(client)
            if self.stats.failures:
                log.info("IMAP mailbox %s: connected again after %d failures", self.name, self.stats.failures)
            log.info(
                "IMAP mailbox %s: logged in to %s:%d (IDLE %s, MOVE %s)",
                self.name, self.mailbox.host, self.mailbox.effective_port,
                "yes" if self._caps.idle else "no", "yes" if self._caps.move else "no",
            )
            self._ensure_move_target(client)
            while True:
                self._check_stop()
                self.lease.renew_if_due()
                while self._sync(client):  # until a pass finds nothing new
                    self._check_stop()
                self.stats.syncs += 1
                self.stats.failures = 0
                self._check_stop()
                if self.use_idle and self._caps.idle:
                    self._idle(client)
                else:
                    self._poll_wait()
        except (_StopNow, LeaseLost):
            self._close(client, logout=True)  # a live connection: say goodbye
            raise
        except BaseException:
            # Possibly a dead connection: a LOGOUT could wait out the whole read timeout.
            self._close(client, logout=False)
            raise

    def _close(self, client: IMAPClient, *, logout: bool) -> None:
        self._client = None
        self.waiting.clear()
        close_quietly(client, logout=logout)

    def _ensure_move_target(self, client: IMAPClient) -> None:
        target = self.mailbox.move_to
        if target is None or client.folder_exists(target):
            return
        try:
            client.create_folder(target)
            log.info("IMAP mailbox %s: created folder %s for processed mail", self.name, target)
        except Exception:
            if not client.folder_exists(target):  # someone else may have just created it
                raise

    # --- waiting for news -------------------------------------------------------------------------
    def _poll_wait(self) -> None:
        self.waiting.set()
        try:
            deadline = time.monotonic() + self.poll_seconds
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if self._wait(min(remaining, max(self.tick, self.lease.ttl / 3))):
                    raise _StopNow()
                self.lease.renew_if_due()
        finally:
            self.waiting.clear()

    def _idle(self, client: IMAPClient) -> None:
        # Mail delivered after our last SELECT but before IDLE begins is not announced during IDLE
        # by every server (Dovecot tells only at the next command): ask once more, then idle.
        # What still lands in the round trip between this NOOP and IDLE waits for the re-issue.
        _, responses = client.noop()
        if _announces_mail(responses):
            return
        client.idle()
        try:
            self.waiting.set()
            self._idle_until_news(client)
        except BaseException:
            self.waiting.clear()
            try:
                client.idle_done()
            except Exception:  # noqa: BLE001, S110 - the original failure is the one to report
                pass
            raise
        self.waiting.clear()
        client.idle_done()

    def _idle_until_news(self, client: IMAPClient) -> None:
        """Return on news (or after ``idle_seconds``, to re-issue IDLE); raise if the line died."""
        started = time.monotonic()
        while True:
            self._check_stop()
            elapsed = time.monotonic() - started
            if elapsed >= self.idle_seconds:
                return
            self.lease.renew_if_due()
            timeout = min(self.tick, self.idle_seconds - elapsed)
            asked = time.monotonic()
            responses = client.idle_check(timeout=timeout)
            if _announces_mail(responses):
                return
            for response in responses:
                if response and response[0] == b"BYE":
                    raise ConnectionError(f"server said BYE: {_untagged_text(response)}")
            if not responses and time.monotonic() - asked < timeout / 2:
                # idle_check came back at once with nothing: the server closed the connection.
                raise ConnectionError("the server closed the connection while idling")

    # --- importing --------------------------------------------------------------------------------
    def _sync(self, client: IMAPClient) -> int:
        """Import what is new in the folder; the number of candidate UIDs looked at."""
        box = self.mailbox
        selected = client.select_folder(box.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        uidnext = int(selected[b"UIDNEXT"]) if b"UIDNEXT" in selected else None
        checkpoint = self.checkpoints.get(box.name, box.folder)
        if checkpoint is None:
            after = 0
            log.info("IMAP mailbox %s: first import of folder %s (%d messages)", self.name, box.folder,
                     int(selected.get(b"EXISTS", 0)))
            self.checkpoints.save(box.name, box.folder, account=self.account, uidvalidity=uidvalidity, last_uid=0)
        elif checkpoint.uidvalidity != uidvalidity or checkpoint.account != self.account:
            after = 0
            self.stats.resyncs += 1
            what = (f"UIDVALIDITY changed from {checkpoint.uidvalidity} to {uidvalidity}"
                    if checkpoint.account == self.account
                    else f"account changed from {checkpoint.account} to {self.account}")
            log.warning(
                "IMAP mailbox %s: %s: re-scanning folder %s from UID 1; messages already imported "
                "are dropped as duplicates", self.name, what, box.folder,
            )
            self.checkpoints.save(box.name, box.folder, account=self.account, uidvalidity=uidvalidity, last_uid=0)
        else:
            after = checkpoint.last_uid
            if uidnext is not None and uidnext <= after + 1:
                return 0  # nothing new: no SEARCH needed
        criteria: list[Any] = ["UID", f"{after + 1}:*", "NOT", "DELETED"]
        if box.import_since is not None:
            criteria += ["SINCE", box.import_since]
        # "N:*" always includes the highest UID, even one below N: filter.
        uids = sorted(uid for uid in client.search(criteria) if uid > after)
        if not uids:
            if uidnext is not None and checkpoint is not None and uidnext - 1 > after:
                # Everything above the checkpoint was deleted, or older than import_since.
                self._advance(uidvalidity, uidnext - 1)
            return 0
        for chunk in _chunks(uids, self.batch_size):
            self._check_stop()
            self.lease.renew_if_due()
            for batch in self._by_size(client, chunk):
                self._import_batch(client, batch, uidvalidity)
        return len(uids)

    def _by_size(self, client: IMAPClient, uids: list[int]) -> Iterator[list[int]]:
        """Split ``uids`` into batches of at most ``max_batch_bytes`` of mail (one big mail alone)."""
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        batch: list[int] = []
        total = 0
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if batch and total + size > self.max_batch_bytes:
                yield batch
                batch, total = [], 0
            batch.append(uid)
            total += size
        if batch:
            yield batch

    def _import_batch(self, client: IMAPClient, uids: list[int], uidvalidity: int) -> None:
        box = self.mailbox
        fetched = client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
        accepted: list[int] = []
        done_upto: int | None = None  # every UID up to here is imported (or gone)
        pending: BaseException | None = None
        for uid in uids:
            if self.stopping:
                break
            try:
                self.lease.renew_if_due()
            except Exception as exc:  # noqa: BLE001 - LeaseLost or the database: finish what we have, then raise
                pending = exc
                break
            item = fetched.get(uid)
            if item is None:
                done_upto = uid  # expunged by someone else since the SEARCH: nothing to import
                continue
            raw = item.get(b"BODY[]")
            if raw is None:
                pending = RuntimeError(f"the server sent no body for UID {uid}")
                break
            received_at = _as_utc(item.get(b"INTERNALDATE"))
            try:
                result = self.accept(bytes(raw), [box.recipient], received_at, source=box.source)
            except Exception as exc:  # noqa: BLE001 - not stored: leave it on the server, back off
                pending = _Unstored(
                    f"the intake log could not store UID {uid} ({_short(exc)}); it stays untouched on "
                    "the server and is retried"
                )
                pending.__cause__ = exc
                break
            self._count(result)
            accepted.append(uid)
            done_upto = uid
        if accepted:
            self._acknowledge(client, accepted)
        if done_upto is not None:
            self._advance(uidvalidity, done_upto)
        if pending is not None:
            raise pending
        self._check_stop()

    def _count(self, result: Any) -> None:
        if getattr(result, "duplicate", False):
            self.stats.duplicates += 1
        else:
            self.stats.accepted += 1
            if getattr(result, "quarantined", False):
                self.stats.quarantined += 1

    def _acknowledge(self, client: IMAPClient, uids: list[int]) -> None:
        """Tell the server these are done: flag them \\Seen, and move them when so configured."""
        target = self.mailbox.move_to
        client.add_flags(uids, [SEEN], silent=True)
        if target is not None:
            caps = self._caps
            if self.use_move and caps is not None and caps.move:
                client.move(uids, target)
            else:
                client.copy(uids, target)
                client.add_flags(uids, [DELETED], silent=True)
                if caps is not None and caps.uidplus:
                    client.uid_expunge(uids)
                else:
                    client.expunge()  # without UIDPLUS: expunges every \Deleted mail of the folder
        self.stats.acknowledged += len(uids)

    def _advance(self, uidvalidity: int, last_uid: int) -> None:
        self.checkpoints.save(
            self.mailbox.name, self.mailbox.folder, account=self.account, uidvalidity=uidvalidity,
            last_uid=last_uid,
        )


class _Unstored(Exception):
    """The intake log refused a message (``IntakeUnavailable`` or an unexpected error)."""


def _announces_mail(responses: Iterable[Any]) -> bool:
    """True when untagged responses say messages arrived (``* 5 EXISTS``, ``* 1 RECENT``)."""
    return any(
        isinstance(r, tuple) and len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses
    )


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.astimezone(UTC)  # a naive time is the local time
        return value.astimezone(UTC)
    return datetime.now(UTC)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, IntakeUnavailable):
        return text or "intake unavailable"
    return f"{exc.__class__.__name__}: {text}"[:300]


def _untagged_text(response: tuple[Any, ...]) -> str:
    return " ".join(p.decode(errors="replace") if isinstance(p, bytes) else str(p) for p in response[1:])


def _is_imap_error(exc: BaseException) -> bool:
    import imaplib

    return isinstance(exc, imaplib.IMAP4.error)


Clock = Callable[[], float]
