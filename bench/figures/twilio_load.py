"""Figure 8: signed Twilio webhooks (SMS and WhatsApp) under load, with bursts from one number.

Omnidesk on its defaults (SQLite, embedded broker) as ``omnidesk run --without imap --without
smtp``: the web app, the worker and the sweeper in one process, Twilio configured, its REST API
replaced by a local Messages sink (the acknowledgements go there, as they would go to Twilio).

A load generator in its own process opens 20 HTTP keep-alive connections and offers 100
webhooks/s in total (open loop, evenly spaced) for 30 s (``--quick``: 5 s), each signed with
``X-Twilio-Signature`` as Twilio signs it. One message in four belongs to a burst: five
consecutive slots (five different clients, 10 ms apart) from one number, the way WhatsApp users
type in fragments. Per request it records:

* ``200`` latency: request sent to the (empty TwiML) answer, what Twilio waits for (15 s limit);
* ``200`` -> ticket committed: to the moment the intake row reads ``routed`` from another
  connection, polled every 10 ms;
* tickets per burst: after the drain, the number of tickets of every burst number (goal: 1).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.figures import Context, Figure, check, med, row

CLIENTS = 20
RATE = 100.0
BURST = 5
GOAL_200_P99_MS = 100.0
ACCOUNT = "AC" + "be" * 16
TOKEN = "bench-twilio-token"
OUR_NUMBER = "+14155550100"


def _pct(values: list[float], q: float) -> float | None:
    from bench.omnidesk_ingest import percentile

    return percentile(values, q)


class MessagesSink:
    """Answers the Messages API's create with a message resource; counts what it got."""

    def __init__(self) -> None:
        self.count = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.count += 1
                body = json.dumps({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------------
# the load generator (its own process)
# ------------------------------------------------------------------------------------------------
def _sender(slot: int, tag: str) -> tuple[str, bool]:
    """The customer number of a global slot, and whether it is part of a burst."""
    group = slot // BURST
    if group % 4 == 0:
        return f"+1415{(group * 7 + 1000003) % 10_000_000:07d}", True
    return f"+1646{(slot * 13 + hash(tag) % 1000) % 10_000_000:07d}", False


def load_main(port: int, db_path: Path, seconds: float, clients: int, rate: float, drain: float,
              tag: str, out: Path) -> int:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    url = f"http://127.0.0.1:{port}/intake/twilio/messages"
    records: dict[str, dict[str, Any]] = {}
    bursts: set[str] = set()
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start_at = time.time() + 0.5
    end_at = start_at + seconds

    def error(kind: str) -> None:
        with lock:
            errors[kind] = errors.get(kind, 0) + 1

    def client(c: int) -> None:
        conn: http.client.HTTPConnection | None = None
        k = 0
        while True:
            slot = k * clients + c
            scheduled = start_at + slot / rate
            if scheduled >= end_at or time.time() >= end_at:
                break
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            k += 1
            number, burst = _sender(slot, tag)
            whatsapp = slot % 2 == 0
            prefix = "whatsapp:" if whatsapp else ""
            sid = f"SM{tag}{slot:08d}".ljust(34, "0")[:34]
            params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": ACCOUNT, "From": prefix + number,
                      "To": prefix + OUR_NUMBER, "Body": f"message {slot} about order {slot % 977}",
                      "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01"}
            body = urlencode(params)
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": validator.compute_signature(url, params)}
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                t0 = time.time()
                conn.request("POST", "/intake/twilio/messages", body=body, headers=headers)
                answer = conn.getresponse()
                answer.read()
                t1 = time.time()
                if answer.status != 200:
                    error(f"HTTP {answer.status}")
                    continue
                with lock:
                    records[sid] = {"sent": t0, "ok": t1, "scheduled": scheduled}
                    if burst:
                        bursts.add(number)
            except (OSError, http.client.HTTPException) as exc:
                error(exc.__class__.__name__)
                with contextlib.suppress(Exception):
                    if conn is not None:
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()

    committed: dict[str, float] = {}
    stop_poll = threading.Event()

    def poll() -> None:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        low = 0
        while not stop_poll.is_set():
            # Rows commit out of id order: rescan from the oldest row pending *before* the scan,
            # so a row routed between the two queries is never skipped.
            try:
                pending = db.execute("SELECT min(id) FROM intake WHERE state = 'pending'").fetchone()[0]
                rows = db.execute("SELECT id, external_id FROM intake WHERE state = 'routed' AND id > ?",
                                  (low,)).fetchall()
            except sqlite3.Error:
                pending, rows = None, []
            now = time.time()
            for _iid, ext in rows:
                committed.setdefault(ext, now)
            if pending:
                low = max(low, pending - 1)
            elif rows:
                low = max(low, max(r[0] for r in rows))
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
            missing = [s for s in records if s not in committed]
        if not missing:
            break
        time.sleep(0.05)
    drained = time.time()
    stop_poll.set()
    poller.join(timeout=5)

    lat = [(r["ok"] - r["sent"]) * 1000 for r in records.values()]
    commit, not_committed = [], 0
    for sid, r in records.items():
        seen = committed.get(sid)
        if seen is None:
            not_committed += 1
            seen = drained
        commit.append((seen - r["ok"]) * 1000)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    per_number = dict(db.execute(
        "SELECT i.address, count(t.id) FROM tickets t JOIN contact_identities i ON i.contact_id = t.contact_id "
        "WHERE i.kind = 'phone' GROUP BY i.address"
    ).fetchall())
    db.close()
    burst_tickets = [per_number.get(n, 0) for n in bursts]
    result = {
        "clients": clients, "offered_rate": rate, "seconds": seconds, "accepted_200": len(records),
        "errors": errors, "error_count": sum(errors.values()),
        "latency_200_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": max(lat, default=None)},
        "committed_ms": {"p50": _pct(commit, 50), "p99": _pct(commit, 99), "max": max(commit, default=None)},
        "not_committed_within_drain": not_committed,
        "bursts": len(bursts), "bursts_with_one_ticket": sum(1 for n in burst_tickets if n == 1),
        "bursts_with_more": sum(1 for n in burst_tickets if n > 1),
    }
    out.write_text(json.dumps(result, indent=1))
    return 0


# ------------------------------------------------------------------------------------------------
# one run: Omnidesk + the Messages sink + the load generator
# ------------------------------------------------------------------------------------------------
def run_once(ctx: Context, seconds: float, drain: float, tag: str) -> dict[str, Any]:
    from bench.omnidesk_ingest import (
        Measured,
        _run_cli,
        free_port,
        omnidesk_command,
        omnidesk_env,
        wait_for_port,
    )

    run_dir = Path(tempfile.mkdtemp(prefix="omnidesk-twilio-", dir=ctx.workdir))
    data_dir = run_dir / "var"
    port = free_port()
    sink = MessagesSink()
    proc: Measured | None = None
    try:
        env = omnidesk_env(data_dir, http_port=str(port), smtp_port=str(free_port()),
                           twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN, twilio_api_base=sink.url)
        _run_cli(env, run_dir, "db", "upgrade")
        log_path = run_dir / "omnidesk.log"
        with open(log_path, "wb") as log_file:
            popen = subprocess.Popen(
                omnidesk_command("run", "--without", "imap", "--without", "smtp", "--without", "twilio-media"),
                env=env, cwd=str(run_dir), stdout=log_file, stderr=subprocess.STDOUT)
        proc = Measured("omnidesk run (web+worker)", popen, log_path)
        wait_for_port(port, timeout=30, proc=popen)
        out = run_dir / "load.json"
        done = subprocess.run(
            [sys.executable, "-m", "bench.figures.twilio_load", "--port", str(port),
             "--db", str(data_dir / "omnidesk.db"), "--seconds", str(seconds), "--clients", str(CLIENTS),
             "--rate", str(RATE), "--drain", str(drain), "--tag", tag, "--out", str(out)],
            capture_output=True, text=True, timeout=seconds + drain + 180, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
        proc.stop()
        result["omnidesk_cpu_seconds"] = round(proc.cpu_seconds or 0.0, 2)
        result["acks_at_twilio"] = sink.count
        return result
    finally:
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.stop(timeout=5)
        sink.stop()
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)


def run(ctx: Context) -> Figure:
    fig = Figure("twilio_load", "8. Twilio webhooks under load")
    seconds = 5.0 if ctx.quick else 30.0
    drain = 20.0 if ctx.quick else 30.0
    n_runs = ctx.runs if ctx.quick else min(ctx.runs, 2)
    runs: list[dict[str, Any]] = []
    for i in range(n_runs):
        try:
            r = run_once(ctx, seconds, drain, tag=f"{int(time.time()) % 100000:05d}{i}")
        except Exception as exc:  # noqa: BLE001
            ctx.log(f"  run {i + 1} failed: {exc}")
            continue
        runs.append(r)
        ctx.log(f"  run {i + 1}/{n_runs}: {r['accepted_200']} accepted, 200 p50 {r['latency_200_ms']['p50']:.1f} ms "
                f"p99 {r['latency_200_ms']['p99']:.1f} ms; committed p99 {r['committed_ms']['p99']:.0f} ms; "
                f"bursts {r['bursts_with_one_ticket']}/{r['bursts']} on one ticket; {r['error_count']} errors")
    p99 = med(r["latency_200_ms"]["p99"] for r in runs)
    more = med(r["bursts_with_more"] for r in runs)
    fig.rows += [
        row("8 Twilio webhooks accepted with 200 in the window", med(r["accepted_200"] for r in runs)),
        row("8 Twilio 200 latency p50 (ms)", med(r["latency_200_ms"]["p50"] for r in runs)),
        row("8 Twilio 200 latency p99 (ms)", p99, goal=f"≤ {GOAL_200_P99_MS:.0f} ms",
            check=check(p99, "<=", GOAL_200_P99_MS, unit=" ms", what="Twilio 200 p99")),
        row("8 Twilio 200 -> ticket committed p99 (ms)", med(r["committed_ms"]["p99"] for r in runs)),
        row("8 Twilio bursts of 5 on more than one ticket", more, goal="0",
            check=check(more, "<=", 0, what="bursts split")),
        row("8 Twilio errors (non-200, not committed)",
            f"{med(r['error_count'] for r in runs):.0f} / {med(r['not_committed_within_drain'] for r in runs):.0f}"
            if runs else None, goal="0"),
    ]
    fig.notes.append(
        f"twilio: {CLIENTS} clients, {RATE:.0f} signed webhooks/s for {seconds:.0f} s, one in four in bursts of "
        f"{BURST} from one number, {len(runs)} run(s); Omnidesk defaults in one `omnidesk run --without imap "
        "--without smtp` process, acknowledgements to a local Messages sink; no peer (django-helpdesk has no "
        "Twilio intake)")
    fig.data = {"runs": runs, "seconds": seconds, "drain": drain}
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Twilio webhook load generator (started by bench.run)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--rate", type=float, default=RATE)
    ap.add_argument("--drain", type=float, default=30)
    ap.add_argument("--tag", default="x")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    return load_main(a.port, a.db, a.seconds, a.clients, a.rate, a.drain, a.tag, a.out)


if __name__ == "__main__":
    sys.exit(main())
