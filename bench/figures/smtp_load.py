"""Figure 2: SMTP intake under load.

Omnidesk on its defaults (SQLite, embedded broker) as ``omnidesk run --without imap --without
web``: the SMTP server, the worker and the sweeper in one process (with the embedded broker the
worker must share the SMTP process; this is ``omnidesk smtp`` + ``omnidesk worker`` on a laptop).
Acknowledgements go to a sink in its own process.

A load generator in its own process opens 20 SMTP connections and offers 200 messages/s in
total, evenly spaced (each client 10/s on a fixed schedule, open loop: a client that falls
behind sends at once, never skips), for 30 s (``--quick``: 5 s). Messages are corpus messages
with a fresh Message-ID each. Per message it records:

* ``250`` latency: from the DATA command to the ``250`` after the message body (the time the
  sender waits for Omnidesk to make the message durable);
* ``250`` -> ticket committed: from the ``250`` to the moment the intake row reads ``routed``
  from another connection (the routing transaction committed), polled every 10 ms;
* errors: refused connections, non-250 replies, exceptions; messages not committed within
  the drain window count with the window's end as their commit time (a lower bound).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.figures import Context, Figure, check, med, row

CLIENTS = 20
RATE = 200.0
GOAL_250_P99_MS = 20.0
GOAL_COMMIT_P99_MS = 200.0
_MID = re.compile(rb"^Message-ID:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


def _pct(values: list[float], q: float) -> float | None:
    from bench.omnidesk_ingest import percentile

    return percentile(values, q)


# ------------------------------------------------------------------------------------------------
# the load generator (its own process)
# ------------------------------------------------------------------------------------------------


def _load_messages(corpus_dir: Path, limit: int = 400) -> list[tuple[bytes, str]]:
    from bench.corpus import Corpus

    out = []
    for m in Corpus.load(corpus_dir).messages[:limit]:
        raw = _MID.sub(b"", m.raw, count=1)
        out.append((raw, m.to_address))
    return out


def load_main(port: int, db_path: Path, corpus_dir: Path, seconds: float, clients: int,
              rate: float, drain: float, tag: str, out: Path) -> int:
    messages = _load_messages(corpus_dir)
    per_client = rate / clients
    records: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    errors: dict[str, int] = {}
    start_at = time.time() + 0.5
    end_at = start_at + seconds

    def error(kind: str) -> None:
        with lock:
            errors[kind] = errors.get(kind, 0) + 1

    def client(c: int) -> None:
        conn: smtplib.SMTP | None = None
        k = 0
        while True:
            scheduled = start_at + (k + c / clients) / per_client
            if scheduled >= end_at or time.time() >= end_at:
                break  # the window is over: what a late client did not send stays unsent
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            raw, rcpt = messages[(c * 7919 + k) % len(messages)]
            mid = f"<load-{tag}-{c}-{k}@load.acme.test>"
            data = f"Message-ID: {mid}\r\n".encode() + raw
            k += 1
            try:
                if conn is None:
                    conn = smtplib.SMTP("127.0.0.1", port, timeout=30)
                    conn.ehlo("load.acme.test")
                code, _ = conn.mail("customer@load.acme.test")
                if code != 250:
                    error(f"MAIL {code}")
                    continue
                code, _ = conn.rcpt(rcpt)
                if code not in (250, 251):
                    error(f"RCPT {code}")
                    conn.rset()
                    continue
                t_data = time.time()
                code, _ = conn.data(data)
                t_250 = time.time()
                if code != 250:
                    error(f"DATA {code}")
                    continue
                with lock:
                    records[mid] = {"scheduled": scheduled, "data": t_data, "ok": t_250}
            except (smtplib.SMTPException, OSError) as exc:
                error(exc.__class__.__name__)
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.quit()

    committed: dict[str, float] = {}
    stop_poll = threading.Event()

    def poll() -> None:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        low = 0
        seen_ids: set[int] = set()
        while not stop_poll.is_set():
            try:
                rows = db.execute(
                    "SELECT id, external_id FROM intake WHERE state = 'routed' AND id >= ?", (low,)
                ).fetchall()
            except sqlite3.Error:
                rows = []
            now = time.time()
            for iid, ext in rows:
                if iid not in seen_ids:
                    seen_ids.add(iid)
                    committed.setdefault(ext, now)
            while low in seen_ids or low == 0:
                seen_ids.discard(low)
                low += 1
            time.sleep(0.01)
        db.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    sent_done = time.time()
    deadline = sent_done + drain
    while time.time() < deadline:
        with lock:
            missing = [m for m in records if m not in committed]
        if not missing:
            break
        time.sleep(0.05)
    drained = time.time()
    stop_poll.set()
    poller.join(timeout=5)

    lat_250 = [(r["ok"] - r["data"]) * 1000 for r in records.values()]
    lag = [(r["ok"] - r["scheduled"]) * 1000 for r in records.values()]
    commit = []
    not_committed = 0
    for mid, r in records.items():
        seen = committed.get(mid)
        if seen is None:
            not_committed += 1
            seen = drained
        commit.append((seen - r["ok"]) * 1000)
    offered = sum(1 for c in range(clients) for k in range(int(seconds * per_client) + 1)
                  if start_at + (k + c / clients) / per_client < end_at)
    attempted = len(records) + sum(errors.values())
    result = {
        "clients": clients, "offered_rate": rate, "seconds": seconds, "offered": offered,
        "not_sent_in_window": max(0, offered - attempted),
        "accepted_250": len(records), "errors": errors, "error_count": sum(errors.values()),
        "accepted_rate": round(len(records) / max(1e-9, (max((r["ok"] for r in records.values()),
                                                             default=start_at) - start_at)), 1),
        "send_phase_seconds": round(sent_done - start_at, 2),
        "latency_250_ms": {"p50": _pct(lat_250, 50), "p99": _pct(lat_250, 99),
                           "max": max(lat_250, default=None)},
        "behind_schedule_ms": {"p50": _pct(lag, 50), "p99": _pct(lag, 99)},
        "committed_ms": {"p50": _pct(commit, 50), "p99": _pct(commit, 99),
                         "max": max(commit, default=None)},
        "not_committed_within_drain": not_committed, "drain_seconds": drain,
        "drain_used_seconds": round(drained - sent_done, 2),
    }
    out.write_text(json.dumps(result, indent=1))
    return 0


# ------------------------------------------------------------------------------------------------
# one run: Omnidesk + sink + the load generator
# ------------------------------------------------------------------------------------------------


def run_once(ctx: Context, seconds: float, drain: float, tag: str) -> dict[str, Any]:
    from bench.omnidesk_ingest import (
        Measured,
        SinkProcess,
        _run_cli,
        free_port,
        omnidesk_command,
        omnidesk_env,
        wait_for_port,
    )

    run_dir = Path(tempfile.mkdtemp(prefix="omnidesk-smtp-", dir=ctx.workdir))
    data_dir = run_dir / "var"
    port = free_port()
    sink = SinkProcess(run_dir / "sent-mail").start()
    proc: Measured | None = None
    try:
        env = omnidesk_env(data_dir, smtp_port=str(port), http_port=str(free_port()),
                           outbound_smtp_url=sink.url)
        _run_cli(env, run_dir, "db", "upgrade")
        log_path = run_dir / "omnidesk.log"
        with open(log_path, "wb") as log_file:
            popen = subprocess.Popen(
                omnidesk_command("run", "--without", "imap", "--without", "web"), env=env,
                cwd=str(run_dir), stdout=log_file, stderr=subprocess.STDOUT)
        proc = Measured("omnidesk run (smtp+worker)", popen, log_path)
        wait_for_port(port, timeout=30, proc=popen)
        out = run_dir / "load.json"
        done = subprocess.run(
            [sys.executable, "-m", "bench.figures.smtp_load", "--port", str(port),
             "--db", str(data_dir / "omnidesk.db"), "--corpus", str(ctx.corpus_dir()),
             "--seconds", str(seconds), "--clients", str(CLIENTS), "--rate", str(RATE),
             "--drain", str(drain), "--tag", tag, "--out", str(out)],
            capture_output=True, text=True, timeout=seconds + drain + 180, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        proc.stop()
        result["omnidesk_cpu_seconds"] = round(proc.cpu_seconds or 0.0, 2)
        result["omnidesk_peak_rss_mib"] = round((proc.peak_rss_kib or 0) / 1024, 1)
        result["acks_at_sink"] = sink.count()
        return result
    finally:
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
        sink.stop()
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)


def run(ctx: Context) -> Figure:
    fig = Figure("smtp_load", "2. SMTP intake under load")
    seconds = 5.0 if ctx.quick else 30.0
    drain = 20.0 if ctx.quick else 30.0
    # Two 30-s runs in the full run: a third would push the whole table past 10 minutes.
    n_runs = ctx.runs if ctx.quick else min(ctx.runs, 2)
    runs: list[dict[str, Any]] = []
    for i in range(n_runs):
        try:
            r = run_once(ctx, seconds, drain, tag=f"{int(time.time())}-{i}")
        except Exception as exc:  # noqa: BLE001
            ctx.log(f"  run {i + 1} failed: {exc}")
            continue
        runs.append(r)
        ctx.log(
            f"  run {i + 1}/{n_runs}: {r['accepted_250']}/{r['offered']} accepted "
            f"({r['accepted_rate']} msg/s), 250 p50 {r['latency_250_ms']['p50']:.1f} ms "
            f"p99 {r['latency_250_ms']['p99']:.1f} ms; committed p50 "
            f"{r['committed_ms']['p50']:.0f} ms p99 {r['committed_ms']['p99']:.0f} ms; "
            f"{r['error_count']} errors, {r['not_committed_within_drain']} not committed"
        )
    p99_250 = med(r["latency_250_ms"]["p99"] for r in runs)
    p99_c = med(r["committed_ms"]["p99"] for r in runs)
    fig.rows += [
        row("2 SMTP offered / accepted (msg/s)",
            f"{RATE:.0f} / {med(r['accepted_rate'] for r in runs):.0f}" if runs else None),
        row("2 SMTP messages offered / accepted with 250 in the window",
            f"{med(r['offered'] for r in runs):.0f} / {med(r['accepted_250'] for r in runs):.0f}"
            if runs else None),
        row("2 SMTP 250 latency p50 (ms)", med(r["latency_250_ms"]["p50"] for r in runs)),
        row("2 SMTP 250 latency p99 (ms)", p99_250, goal=f"≤ {GOAL_250_P99_MS:.0f} ms",
            check=check(p99_250, "<=", GOAL_250_P99_MS, unit=" ms", what="SMTP 250 p99")),
        row("2 SMTP 250 -> ticket committed p50 (ms)", med(r["committed_ms"]["p50"] for r in runs)),
        row("2 SMTP 250 -> ticket committed p99 (ms)", p99_c, goal=f"≤ {GOAL_COMMIT_P99_MS:.0f} ms",
            check=check(p99_c, "<=", GOAL_COMMIT_P99_MS, unit=" ms",
                        what="SMTP 250 -> committed p99")),
        row("2 SMTP errors (refused, non-250, not committed)",
            f"{med(r['error_count'] for r in runs):.0f} / "
            f"{med(r['not_committed_within_drain'] for r in runs):.0f}" if runs else None, goal="0"),
    ]
    fig.notes.append(
        f"smtp: {CLIENTS} clients, {RATE:.0f} msg/s offered for {seconds:.0f} s, open loop, "
        f"{len(runs)} run(s); "
        "Omnidesk defaults in one `omnidesk run --without imap --without web` process; commit "
        f"time polled every 10 ms; not committed within {drain:.0f} s counts as committed then "
        "(lower bound); no peer (django-helpdesk has no SMTP intake)")
    fig.data = {"runs": runs, "seconds": seconds, "drain": drain}
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="SMTP load generator (started by bench.run)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--rate", type=float, default=RATE)
    ap.add_argument("--drain", type=float, default=30)
    ap.add_argument("--tag", default="x")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    return load_main(a.port, a.db, a.corpus, a.seconds, a.clients, a.rate, a.drain, a.tag, a.out)


if __name__ == "__main__":
    sys.exit(main())
