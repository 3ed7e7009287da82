"""Omnidesk ingesting the benchmark corpus from a real Dovecot, every process measured on its own.

The Omnidesk side of figure 1 (and the worker RSS of figure 5). One run:

1. a private Dovecot on 127.0.0.1 with the two corpus mailboxes (``support@acme.test``,
   ``billing@acme.test``), the corpus APPENDed in shuffled order: exactly what the peer harness
   (``bench.peer_helpdesk``) delivers to django-helpdesk;
2. an SMTP sink for the acknowledgements, in its own process (its CPU is not Omnidesk's);
3. the store migrated beforehand (the peer too starts from a migrated database);
4. the clock starts, and Omnidesk's own processes start from the command line, as an operator
   runs them:

   * ``defaults``: ``omnidesk run --without smtp --without web``: one process with the worker, the
     sweeper and the IMAP pollers, SQLite in the data dir and the embedded broker;
   * ``scaled``: PostgreSQL + Redis, ``omnidesk imap`` (one poller process), two
     ``omnidesk worker`` processes and ``omnidesk scheduler`` (the sweeper), as in the Procfile;

5. the run ends when every message is in the intake log, nothing is left to route and every
   acknowledgement in the outbox has been handed to the sink. Wall time runs from the process
   start to the later of the last routing commit (``intake.routed_at``) and the last
   acknowledgement sent (``outbox.sent_at``);
6. the processes get SIGTERM; ``wait4`` gives each one's CPU time and peak RSS; RSS is also
   sampled every 100 ms while the import runs (the steady-state figure);
7. correctness is counted (never asserted) against the corpus manifest: messages stored once,
   tickets vs threads, replies on their thread's ticket, attachments stored intact (blob
   present, SHA-256 right), acknowledgements at the sink (and those the per-sender auto-reply cap
   withheld, by design).

Command line (one run, JSON on stdout)::

    python -m bench.omnidesk_ingest run --n 500 --variant defaults
    python -m bench.omnidesk_ingest run --n 2000 --variant scaled

Sub-commands ``sink`` and ``bigmail`` are helpers the harness starts in their own processes.
"""

from __future__ import annotations

import argparse
import contextlib
import email.parser
import email.policy
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from bench.corpus import QUEUE_ADDRESSES, Corpus, generate_corpus
from bench.maildir import Dovecot, deliver_imap, stop_process

ROOT = Path(__file__).resolve().parents[1]
RULES_FILE = ROOT / "config" / "routing.yaml"
IMAP_NAMES = {QUEUE_ADDRESSES[0]: "support", QUEUE_ADDRESSES[1]: "billing"}
DOMAIN = "acme.test"

__all__ = [
    "ServiceUrls",
    "SinkProcess",
    "omnidesk_command",
    "omnidesk_env",
    "run_omnidesk_ingest",
    "service_urls",
]


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.03)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def omnidesk_command(*args: str) -> list[str]:
    """The ``omnidesk`` command line of this interpreter's environment."""
    script = Path(sys.executable).parent / "omnidesk"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; from omnidesk.cli import main; sys.exit(main())", *args]


def omnidesk_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """This environment without the developer's OMNIDESK_* settings, plus ``settings``
    (given as ``name=value``: ``smtp_port="2600"`` becomes ``OMNIDESK_SMTP_PORT=2600``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OMNIDESK_") or k.startswith("OMNIDESK_TEST_")
    }
    env.update(
        {
            "OMNIDESK_DATA_DIR": str(data_dir),
            "OMNIDESK_RULES_FILE": str(RULES_FILE),
            "OMNIDESK_SMTP_DOMAINS": DOMAIN,
            "OMNIDESK_SUPPORT_ADDRESS": f"support@{DOMAIN}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    for name, value in settings.items():
        env[name if name.startswith("OMNIDESK_") else f"OMNIDESK_{name.upper()}"] = value
    return env


def rss_kib(pid: int, field_name: str = "VmRSS") -> int | None:
    """Resident set size (``VmRSS``) or its peak (``VmHWM``) of a process in KiB, from /proc;
    None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


# Why peaks are read from /proc and not from wait4/getrusage: Linux carries the peak RSS of the
# image a process replaced at exec (with vfork/fork: the parent's) into ru_maxrss, so a child
# spawned by a harness that once held 130 MiB reports at least 130 MiB, whatever it used itself.
# VmHWM is the peak of the process's own address space.


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return float(s[k])


# ------------------------------------------------------------------------------------------------
# the outbound sink, in its own process
# ------------------------------------------------------------------------------------------------


class SinkProcess:
    """``python -m bench.omnidesk_ingest sink``: an aiosmtpd sink (``tests.peers.smtp_sink``)
    that writes every mail it accepts to ``directory`` as ``NNNNNN.eml``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.omnidesk_ingest", "sink", "--port", str(self.port),
             "--dir", str(self.directory)],
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, proc=self.proc)
        return self

    def count(self) -> int:
        try:
            return sum(1 for p in os.scandir(self.directory) if p.name.endswith(".eml"))
        except OSError:
            return 0

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.glob("*.eml"))]

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sink_main(port: int, directory: Path) -> int:
    from tests.peers.smtp_sink import SmtpSink

    directory.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 10**9))

    class FileSink(SmtpSink):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            answer = await super().handle_DATA(server, session, envelope)
            if answer.startswith("250"):
                with self._lock:
                    mail = self.received.pop()
                    n = next(counter)
                tmp = directory / f".{n:06d}.tmp"
                tmp.write_bytes(mail.raw)
                os.replace(tmp, directory / f"{n:06d}.eml")
            return answer

    sink = FileSink(port=port).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    sink.stop()
    return 0


# ------------------------------------------------------------------------------------------------
# PostgreSQL and Redis for the scaled variant
# ------------------------------------------------------------------------------------------------


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class ServiceUrls:
    """Where PostgreSQL and Redis are, and how they were found (for the printed settings)."""

    postgres: str
    redis: str
    postgres_source: str
    redis_source: str
    _stoppers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for stop in reversed(self._stoppers):
            with contextlib.suppress(Exception):
                stop()
        self._stoppers.clear()


def service_urls() -> ServiceUrls:
    """PostgreSQL and Redis: ``OMNIDESK_TEST_DATABASE_URL`` / ``OMNIDESK_TEST_REDIS_URL`` when
    set; else the machine's servers on their default ports (Redis database 15, which nothing
    else here uses, emptied of our keys before each run); else private ones started with the
    test peers (``tests/peers``)."""
    stoppers: list[Callable[[], None]] = []
    pg = os.environ.get("OMNIDESK_TEST_DATABASE_URL", "")
    pg_source = "OMNIDESK_TEST_DATABASE_URL"
    if not pg:
        if _reachable("127.0.0.1", 5432):
            pg, pg_source = "postgresql://postgres@127.0.0.1:5432/postgres", "the machine's server"
        else:
            from tests.peers.postgres import PostgresServer

            server = PostgresServer()
            pg, pg_source = server.start(), "private server (tests.peers, fsync off)"
            stoppers.append(server.stop)
    rd = os.environ.get("OMNIDESK_TEST_REDIS_URL", "")
    rd_source = "OMNIDESK_TEST_REDIS_URL"
    if not rd:
        if _reachable("127.0.0.1", 6379):
            rd, rd_source = "redis://127.0.0.1:6379/15", "the machine's server, db 15"
        else:
            from tests.peers.redis import RedisServer

            rserver = RedisServer()
            rd, rd_source = rserver.start(), "private server (tests.peers)"
            stoppers.append(rserver.stop)
    return ServiceUrls(pg, rd, pg_source, rd_source, stoppers)


def clear_broker(redis_url: str) -> None:
    """Delete the Dramatiq keys of the ``omnidesk`` namespace (a previous run's leftovers)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match="omnidesk*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------
# reading the store from outside (progress, timings, correctness)
# ------------------------------------------------------------------------------------------------


class StoreProbe:
    """Plain read-only SQL against Omnidesk's store, from the harness process."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.is_sqlite = database_url.startswith("sqlite")
        self._conn: Any = None

    def _connect(self) -> Any:
        if self._conn is None:
            if self.is_sqlite:
                path = self.url.split("///", 1)[1]
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            else:
                import psycopg

                url = self.url.replace("postgresql+psycopg://", "postgresql://")
                self._conn = psycopg.connect(url, autocommit=True)
        return self._conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connect()
        if not self.is_sqlite:
            sql = sql.replace("?", "%s")
        cur = conn.execute(sql, params)
        return list(cur.fetchall())

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def progress(self) -> dict[str, int]:
        states = dict(self.rows("SELECT state, COUNT(*) FROM intake GROUP BY state"))
        outbox_open = self.scalar(
            "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"
        )
        return {
            "intake": int(sum(states.values())),
            "pending": int(states.get("pending", 0)),
            "routed": int(states.get("routed", 0)),
            "quarantined": int(states.get("quarantined", 0)),
            "outbox_open": int(outbox_open or 0),
        }

    def timestamp(self, sql: str) -> float | None:
        value = self.scalar(sql)
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())

    def json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def check_correctness(
    probe: StoreProbe, blob_dir: Path, manifest: dict[str, Any], sent: list[bytes]
) -> dict[str, Any]:
    """Count (never assert) how Omnidesk's store matches the manifest, like the peer's check."""
    msgs = manifest["messages"]
    threads = manifest["threads"]
    inbound = probe.rows(
        "SELECT ticket_id, message_id, attachments, decision FROM ticket_messages "
        "WHERE direction = 'inbound'"
    )
    tickets = int(probe.scalar("SELECT COUNT(*) FROM tickets") or 0)
    states = dict(probe.rows("SELECT state, COUNT(*) FROM intake GROUP BY state"))
    outbox = probe.rows("SELECT kind, state, COUNT(*) FROM outbox GROUP BY kind, state")

    ticket_of: dict[str, int] = {}
    stored_twice = 0
    refs_of: dict[str, list[dict[str, Any]]] = {}
    suppressed: dict[str, int] = {}
    for ticket_id, message_id, attachments, decision in inbound:
        mid = (message_id or "").strip()
        if mid in ticket_of:
            stored_twice += 1
        ticket_of.setdefault(mid, int(ticket_id))
        refs_of.setdefault(mid, []).extend(probe.json(attachments) or [])
        d = probe.json(decision) or {}
        reason = d.get("auto_reply_suppressed")
        if reason:
            key = "per-sender cap" if "per hour" in reason or "limit" in reason else reason[:60]
            suppressed[key] = suppressed.get(key, 0) + 1

    replies = on_root = on_parent = 0
    for mid, meta in msgs.items():
        if meta["parent"] is None:
            continue
        replies += 1
        t = ticket_of.get(mid)
        root = threads[meta["thread"]]["root"]
        on_root += t is not None and t == ticket_of.get(root)
        on_parent += t is not None and t == ticket_of.get(meta["parent"])

    owner: dict[int, set[str]] = {}
    per_thread: dict[str, set[int]] = {}
    for tid, th in threads.items():
        per_thread[tid] = {ticket_of.get(m, -1) for m in th["messages"]}
        for t in per_thread[tid]:
            owner.setdefault(t, set()).add(tid)
    threads_right = sum(
        1
        for ts in per_thread.values()
        if len(ts) == 1 and -1 not in ts and len(owner[next(iter(ts))]) == 1
    )

    expected_att = intact = 0
    for mid, meta in msgs.items():
        shas = {r.get("sha256") for r in refs_of.get(mid, [])}
        for sha in meta["attachment_sha256"]:
            expected_att += 1
            if sha not in shas:
                continue
            path = blob_dir / sha[:2] / sha[2:4] / sha
            try:
                if hashlib.sha256(path.read_bytes()).hexdigest() == sha:
                    intact += 1
            except OSError:
                pass

    thread_of_mid = {mid: meta["thread"] for mid, meta in msgs.items()}
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    acks_by_thread: dict[str, int] = {}
    acks = other = 0
    for raw in sent:
        headers = parser.parsebytes(raw)
        irt = str(headers.get("In-Reply-To", "")).strip()
        thread = thread_of_mid.get(irt)
        if thread is None:
            other += 1
            continue
        acks += 1
        acks_by_thread[thread] = acks_by_thread.get(thread, 0) + 1
    cap_suppressed = sum(suppressed.values())
    outbox_counts: dict[str, int] = {}
    for kind, state, count in outbox:
        outbox_counts[f"{kind}:{state}"] = int(count)
    return {
        "messages_expected": len(msgs),
        "messages_imported": sum(1 for m in msgs if m in ticket_of),
        "messages_stored_twice": stored_twice,
        "intake_states": {k: int(v) for k, v in states.items()},
        "threads_expected": len(threads),
        "tickets_created": tickets,
        "threads_fully_right": threads_right,
        "replies": replies,
        "replies_on_thread_ticket": on_root,
        "replies_on_parent_ticket": on_parent,
        "threading_pct": round(100.0 * on_root / replies, 1) if replies else 100.0,
        "attachments_expected": expected_att,
        "attachments_stored_intact": intact,
        "mails_at_sink": len(sent),
        "acks_sent": acks,
        "threads_acked_once": sum(1 for v in acks_by_thread.values() if v == 1),
        "threads_acked_twice_or_more": sum(1 for v in acks_by_thread.values() if v > 1),
        "acks_withheld": suppressed,
        "acks_expected": len(threads) - cap_suppressed,
        "mails_other": other,
        "outbox": outbox_counts,
    }


# ------------------------------------------------------------------------------------------------
# Omnidesk's processes
# ------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """One Omnidesk process under measurement."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    rss_samples: list[tuple[float, int]] = field(default_factory=list)
    hwm_kib: int = 0  # the largest VmHWM read (the process's own peak RSS)
    cpu_seconds: float | None = None
    ru_maxrss_kib: int | None = None  # wait4's figure: includes the parent's peak (see above)
    exit_code: int | None = None

    @property
    def peak_rss_kib(self) -> int:
        return self.hwm_kib or (self.ru_maxrss_kib or 0)

    def sample(self) -> None:
        if self.proc.poll() is None:
            now = time.time()
            kib = rss_kib(self.proc.pid)
            hwm = rss_kib(self.proc.pid, "VmHWM")
            if kib:
                self.rss_samples.append((now, kib))
            if hwm and hwm > self.hwm_kib:
                self.hwm_kib = hwm

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then reap with ``wait4`` for CPU time and peak RSS (SIGKILL after timeout)."""
        if self.exit_code is not None:
            return
        self.sample()  # the last look at its peak before shutdown
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = False
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline and not killed:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                killed = True
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.exit_code = self.proc.returncode
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.ru_maxrss_kib = int(usage.ru_maxrss)


class RssSampler:
    """Samples VmRSS of processes every ``interval`` seconds in a thread."""

    def __init__(self, procs: Sequence[Measured], interval: float = 0.1) -> None:
        self.procs = list(procs)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for p in self.procs:
                p.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class ProcWatcher:
    """Watches processes this harness did not start itself (the peer's importer), found by a
    marker in their command line, and keeps the largest VmHWM seen: their own peak RSS."""

    def __init__(self, marker: str, interval: float = 0.1) -> None:
        self.marker = marker.encode()
        self.interval = interval
        self.peak_kib = 0
        self.pids: set[int] = set()
        self._other: set[int] = set()  # pids looked at that are something else
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-watcher", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in list(self.pids):
                self._read(pid)
            if self.pids:
                continue  # found and alive: no need to look through /proc (cheap while it runs)
            try:
                entries = [e for e in os.listdir("/proc") if e.isdigit()]
            except OSError:
                continue
            for entry in entries:
                pid = int(entry)
                if pid in self.pids or pid in self._other:
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if self.marker in cmdline:
                    self.pids.add(pid)
                    self._read(pid)
                else:
                    self._other.add(pid)

    def _read(self, pid: int) -> None:
        hwm = rss_kib(pid, "VmHWM")
        if hwm is None:
            self.pids.discard(pid)
        elif hwm > self.peak_kib:
            self.peak_kib = hwm


def _run_cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> None:
    done = subprocess.run(
        omnidesk_command(*args), env=env, cwd=str(cwd), capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"omnidesk {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def _channels_yaml(imap: Dovecot) -> str:
    lines = ["imap:"]
    for addr in QUEUE_ADDRESSES:
        name = IMAP_NAMES[addr]
        lines += [
            f"  - name: {name}",
            "    host: 127.0.0.1",
            f"    port: {imap.port}",
            "    security: none",
            f"    username: {addr}",
            f"    password_env: OMNIDESK_IMAP_{name.upper()}_PASSWORD",
            f"    address: {addr}",
        ]
    return "\n".join(lines) + "\n"


def _deliver(imap: Dovecot, corpus_dir: Path, order: Sequence[Any], shuffle_seed: int | None,
             workdir: Path) -> str:
    """Fill the mailboxes: IMAP APPEND in delivery order the first time (as the peer harness
    does), then copies of those Maildirs (messages, UIDs, Dovecot's uidlist and indexes) into
    each later run's fresh Dovecot before anyone logs in: the same mailboxes, byte for byte and
    UID for UID, without paying the APPEND of the whole corpus on every run."""
    template = workdir / f"maildirs-{Path(corpus_dir).name}-{shuffle_seed}"
    users = list(QUEUE_ADDRESSES)
    if not (template / "complete").exists():
        deliver_imap(imap, order)
        shutil.rmtree(template, ignore_errors=True)
        for user in users:
            shutil.copytree(imap.maildir(user), template / user)
        (template / "complete").write_text("ok\n")
        return "IMAP APPEND in delivery order (kept as the template of later runs)"
    root = os.geteuid() == 0
    for user in users:
        target = imap.maildir(user)
        shutil.copytree(template / user, target)
        if root:  # the mail uid of bench.maildir.Dovecot when run as root
            for dirpath, _dirs, files in os.walk(target):
                os.chown(dirpath, 65534, 65534)
                for name in files:
                    os.chown(os.path.join(dirpath, name), 65534, 65534)
    return "copy of the first run's APPENDed Maildirs (same messages and UIDs)"


def _steady_rss_mib(samples: list[tuple[float, int]], start: float, end: float) -> float | None:
    """Median RSS over the second half of the import (after warm-up, before shutdown)."""
    mid = start + (end - start) / 2
    window = [kib for t, kib in samples if mid <= t <= end]
    if not window:
        window = [kib for _, kib in samples]
    if not window:
        return None
    window.sort()
    return round(window[len(window) // 2] / 1024, 1)


def run_omnidesk_ingest(
    corpus_dir: Path,
    *,
    variant: str = "defaults",
    workdir: Path,
    shuffle_seed: int | None = 7,
    services: ServiceUrls | None = None,
    workers: int = 2,
    timeout: float | None = None,
    profile: Path | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """Import the corpus written in ``corpus_dir`` with Omnidesk; return figures and correctness.

    ``variant``: ``defaults`` (one ``omnidesk run`` process, SQLite, embedded broker) or
    ``scaled`` (PostgreSQL + Redis from ``services``, ``omnidesk imap`` + ``workers`` x
    ``omnidesk worker`` + ``omnidesk scheduler``). ``profile``: record the main Omnidesk process
    with py-spy (``--format raw``, all threads) into this file (slows the run)."""
    if variant not in ("defaults", "scaled"):
        raise ValueError("variant must be 'defaults' or 'scaled'")
    if variant == "scaled" and services is None:
        raise ValueError("the scaled variant needs PostgreSQL and Redis (services)")
    corpus = Corpus.load(corpus_dir)
    manifest = corpus.manifest()
    n = len(corpus.messages)
    timeout = timeout if timeout is not None else max(60.0, n / 10)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"omnidesk-{variant}-", dir=workdir))
    data_dir = run_dir / "var"
    imap: Dovecot | None = None
    sink = SinkProcess(run_dir / "sent-mail")
    procs: list[Measured] = []
    db_cm: contextlib.AbstractContextManager[str] | None = None
    probe: StoreProbe | None = None
    try:
        order = corpus.messages if shuffle_seed is None else corpus.shuffled(shuffle_seed)
        t = time.perf_counter()
        imap = Dovecot(list(QUEUE_ADDRESSES)).start()
        delivery = _deliver(imap, corpus_dir, order, shuffle_seed, workdir)
        delivery_seconds = time.perf_counter() - t
        sink.start()
        channels = run_dir / "channels.yaml"
        channels.write_text(_channels_yaml(imap))
        settings: dict[str, str] = {
            "channels_file": str(channels),
            "outbound_smtp_url": sink.url,
            "OMNIDESK_IMAP_SUPPORT_PASSWORD": imap.password,
            "OMNIDESK_IMAP_BILLING_PASSWORD": imap.password,
        }
        if variant == "scaled":
            assert services is not None
            from tests.peers.postgres import fresh_database

            db_cm = fresh_database(services.postgres)
            db_url = db_cm.__enter__()
            clear_broker(services.redis)
            settings.update(database_url=db_url, redis_url=services.redis)
        env = omnidesk_env(data_dir, **settings)
        _run_cli(env, run_dir, "db", "upgrade")
        database_url = db_url if variant == "scaled" else f"sqlite:///{(data_dir / 'omnidesk.db').resolve()}"
        probe = StoreProbe(database_url)

        plan: list[tuple[str, tuple[str, ...]]]
        if variant == "defaults":
            plan = [("omnidesk run", ("run", "--without", "smtp", "--without", "web"))]
        else:
            plan = [(f"omnidesk worker #{i + 1}", ("worker",)) for i in range(workers)]
            plan += [("omnidesk scheduler", ("scheduler",)), ("omnidesk imap", ("imap",))]
        t0 = time.time()
        for name, args in plan:
            log_path = run_dir / f"{name.replace(' ', '-').replace('#', '')}.log"
            with open(log_path, "wb") as log_file:
                popen = subprocess.Popen(
                    omnidesk_command(*args), env=env, cwd=str(run_dir),
                    stdout=log_file, stderr=subprocess.STDOUT,
                )
            procs.append(Measured(name, popen, log_path))
        spy: subprocess.Popen[bytes] | None = None
        if profile is not None:
            spy = _start_py_spy(procs[0].proc.pid, profile)
        sampler = RssSampler(procs).start()

        deadline = time.monotonic() + timeout
        progress: dict[str, int] = {}
        done = False
        while time.monotonic() < deadline:
            time.sleep(0.1)
            for p in procs:
                if p.proc.poll() is not None:
                    raise RuntimeError(
                        f"{p.name} exited with {p.proc.returncode}:\n"
                        + p.log_path.read_text(errors="replace")[-3000:]
                    )
            with contextlib.suppress(Exception):  # the schema may be mid-creation, a file busy
                progress = probe.progress()
                if (
                    progress["intake"] >= n
                    and progress["pending"] == 0
                    and progress["outbox_open"] == 0
                ):
                    done = True
                    break
        detected = time.time()
        sampler.stop()
        last_routed = probe.timestamp("SELECT MAX(routed_at) FROM intake")
        last_sent = probe.timestamp("SELECT MAX(sent_at) FROM outbox")
        end = max(x for x in (last_routed, last_sent, t0) if x is not None) if done else detected
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=30)
        for p in procs:
            p.stop()
        sent = sink.messages()
        correctness = check_correctness(probe, data_dir / "blobs", manifest, sent)
        wall = end - t0
        imported = correctness["messages_imported"]
        cpu = sum(p.cpu_seconds or 0.0 for p in procs)
        workers_only = [p for p in procs if "worker" in p.name or p.name == "omnidesk run"]
        result: dict[str, Any] = {
            "system": "omnidesk",
            "variant": variant,
            "intake": (
                "imap: Dovecot on 127.0.0.1, one poller thread per mailbox (IDLE), "
                + ("in the one `omnidesk run` process" if variant == "defaults" else "in `omnidesk imap`")
            ),
            "store": "SQLite (WAL) in the data dir" if variant == "defaults" else "PostgreSQL",
            "broker": "embedded (in-process)" if variant == "defaults" else "Redis (Dramatiq)",
            "processes": [name for name, _ in plan],
            "delivery_order": "date" if shuffle_seed is None else f"shuffled (seed {shuffle_seed})",
            "messages": n,
            "complete": done,
            "progress_at_end": progress,
            "delivery_seconds": round(delivery_seconds, 3),
            "delivery": delivery,
            "wall_seconds": round(wall, 3),
            "done_detected_after_seconds": round(detected - t0, 3),
            "last_routed_after_seconds": round(last_routed - t0, 3) if last_routed else None,
            "last_ack_sent_after_seconds": round(last_sent - t0, 3) if last_sent else None,
            "messages_imported": imported,
            "msgs_per_s": round(imported / wall, 2) if wall > 0 else None,
            "cpu_seconds": round(cpu, 3),
            "msgs_per_cpu_s": round(imported / cpu, 2) if cpu else None,
            "peak_rss_mib": round(max(p.peak_rss_kib or 0 for p in procs) / 1024, 1),
            "peak_rss_total_mib": round(sum(p.peak_rss_kib or 0 for p in procs) / 1024, 1),
            "peak_rss_source": "VmHWM of each process (/proc), read every 100 ms and at shutdown",
            "worker_steady_rss_mib": max(
                (_steady_rss_mib(p.rss_samples, t0, end) or 0.0) for p in workers_only
            ),
            "per_process": {
                p.name: {
                    "cpu_seconds": round(p.cpu_seconds or 0.0, 3),
                    "peak_rss_mib": round((p.peak_rss_kib or 0) / 1024, 1),
                    "ru_maxrss_mib": round((p.ru_maxrss_kib or 0) / 1024, 1),
                    "steady_rss_mib": _steady_rss_mib(p.rss_samples, t0, end),
                    "exit_code": p.exit_code,
                }
                for p in procs
            },
            "correctness": correctness,
            "loadavg_1min_before": round(os.getloadavg()[0], 2),
            "workdir": str(run_dir),
        }
        if profile is not None:
            result["profile"] = str(profile)
        return result
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.stop(timeout=5)
        if probe is not None:
            probe.close()
        sink.stop()
        if imap is not None:
            imap.stop()
        if db_cm is not None:
            with contextlib.suppress(Exception):
                db_cm.__exit__(None, None, None)
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def _start_py_spy(pid: int, output: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking",
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def summarize_profile(path: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions of a py-spy ``raw`` (collapsed stacks) file: share of samples spent in the
    function itself (``self``) and anywhere below it (``total``), idle waits left out."""
    idle_markers = ("wait (threading.py", "select (selectors.py", "_wait_for_tstate_lock",
                    "idle_check", "poll (selectors.py", "sleep", "get (queue.py", "_recv_into",
                    "readinto (socket.py", "accept (socket.py", "recv (", "read (ssl.py")
    self_t: dict[str, float] = {}
    total_t: dict[str, float] = {}
    busy = 0.0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        try:
            count = float(count_s)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames or any(m in frames[-1] for m in idle_markers):
            continue
        busy += count
        leaf = _frame_name(frames[-1])
        self_t[leaf] = self_t.get(leaf, 0.0) + count
        for name in {_frame_name(f) for f in frames}:
            total_t[name] = total_t.get(name, 0.0) + count
    if not busy:
        return {"self": [], "total": []}

    def pct(d: dict[str, float]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / busy, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"self": pct(self_t), "total": pct(total_t), "busy_samples": [("all", busy)]}


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    module = where.rsplit(":", 1)[0]
    parts = module.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else module
    return f"{name} ({short})"


# ------------------------------------------------------------------------------------------------
# figure 5, second half: peak RSS growth on one message with a large attachment
# ------------------------------------------------------------------------------------------------


def big_mail(attachment_bytes: int, seed: int = 5) -> bytes:
    """A customer email with one binary attachment of ``attachment_bytes`` (base64 encoded)."""
    import random
    from email.message import EmailMessage

    mail = EmailMessage()
    mail["From"] = "Big Sender <big.sender@customer.example>"
    mail["To"] = f"support@{DOMAIN}"
    mail["Subject"] = "Logs from the crash, as requested"
    mail["Message-ID"] = f"<bigmail-{seed}-{attachment_bytes}@customer.example>"
    mail["Date"] = "Mon, 02 Mar 2026 10:00:00 +0000"
    mail.set_content("Hello,\n\nhere is the full dump you asked for.\n\nRegards\n")
    payload = random.Random(seed).randbytes(attachment_bytes)
    mail.add_attachment(payload, maintype="application", subtype="octet-stream",
                        filename="crash-dump.bin")
    return mail.as_bytes()


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _bigmail_main(directory: Path, attachment_mb: float) -> int:
    """Accept + route one message with a large attachment in this process; print JSON with the
    peak RSS growth (VmHWM after minus VmRSS before, the peak reset through clear_refs)."""
    import gc

    from config.settings import Settings
    from omnidesk.app import App

    size = int(attachment_mb * 1_000_000)
    raw = big_mail(size)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=directory,
        rules_file=RULES_FILE,
        smtp_domains=(DOMAIN,),
        support_address=f"support@{DOMAIN}",
        # The message is ~34 MB once base64-encoded: above the 25 MiB default limit, which would
        # quarantine it unparsed. The figure is about parsing and routing it.
        max_message_bytes=max(len(raw) * 2, 25 * 1024 * 1024),
    )
    app = App(settings)
    app.migrate()
    now = datetime.now(UTC)
    # Warm up every code path (imports, statement caches, the rules) on a small message first.
    small = big_mail(10_000, seed=6)
    warm = app.accept_email(small, [f"support@{DOMAIN}"], now, source="bench")
    app.route_job(warm.intake_id)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _status_kib("VmRSS")
    t = time.perf_counter()
    accepted = app.accept_email(raw, [f"support@{DOMAIN}"], now, source="bench")
    accept_seconds = time.perf_counter() - t
    routed = app.route_job(accepted.intake_id)
    total_seconds = time.perf_counter() - t
    peak = _status_kib("VmHWM")
    with app.db.read() as session:
        from tickets.models import IntakeRow

        row = session.get(IntakeRow, accepted.intake_id)
        state = row.state if row is not None else "?"
    app.close()
    print(json.dumps({
        "attachment_bytes": size,
        "message_bytes": len(raw),
        "rss_before_mib": round(before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "growth_mib": round((peak - before) / 1024, 1),
        "growth_x_attachment": round((peak - before) * 1024 / size, 2),
        "peak_reset": reset,
        "intake_state": state,
        "outbox_ids": list(routed),
        "accept_seconds": round(accept_seconds, 3),
        "accept_and_route_seconds": round(total_seconds, 3),
    }))
    return 0


def run_big_mail(workdir: Path, attachment_mb: float = 25.0) -> dict[str, Any]:
    """Figure 5b in a fresh process (so nothing else inflates its peak)."""
    d = Path(tempfile.mkdtemp(prefix="omnidesk-bigmail-", dir=workdir))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.omnidesk_ingest", "bigmail", "--dir", str(d),
             "--mb", str(attachment_mb)],
            cwd=str(ROOT), env=omnidesk_env(d), capture_output=True, text=True, timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bigmail failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _corpus_dir(n: int, seed: int, workdir: Path) -> Iterator[Path]:
    d = workdir / f"corpus-n{n}-s{seed}"
    if not (d / "manifest.json").exists():
        generate_corpus(n, seed).write(d)
    yield d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.omnidesk_ingest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="one ingest run; JSON on stdout")
    r.add_argument("--n", type=int, default=2000)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--variant", choices=("defaults", "scaled"), default="defaults")
    r.add_argument("--workdir", type=Path, default=None)
    r.add_argument("--keep", action="store_true")
    r.add_argument("--profile", type=Path, default=None, help="py-spy raw output file")
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--dir", type=Path, required=True)
    b = sub.add_parser("bigmail")
    b.add_argument("--dir", type=Path, required=True)
    b.add_argument("--mb", type=float, default=25.0)
    args = ap.parse_args(argv)
    if args.cmd == "sink":
        return _sink_main(args.port, args.dir)
    if args.cmd == "bigmail":
        return _bigmail_main(args.dir, args.mb)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="omnidesk-bench-"))
    services = service_urls() if args.variant == "scaled" else None
    try:
        with _corpus_dir(args.n, args.seed, workdir) as cdir:
            result = run_omnidesk_ingest(cdir, variant=args.variant, workdir=workdir,
                                         services=services, keep=args.keep, profile=args.profile)
        print(json.dumps(result, indent=1, default=str))
        if args.profile is not None and args.profile.exists():
            print(json.dumps(summarize_profile(args.profile), indent=1))
    finally:
        if services is not None:
            services.close()
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
