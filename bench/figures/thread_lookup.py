"""Figure 4: thread lookup and new-ticket routing at 10k, 100k and 1M stored tickets (PostgreSQL).

A fresh database migrated by the real migrations is filled in steps (10k, then up to 100k, then
up to 1M tickets) with generated rows, inserted by PostgreSQL itself (``INSERT ... SELECT FROM
generate_series``, one statement per table per step: no router, no Python per row). Per ticket:
its inbound message, its intake row, its acknowledgement in the outbox and two thread keys; one
contact per five tickets (foreign-key triggers off during the load, as ``pg_restore
--disable-triggers`` does: the rows are consistent by construction). Then ``ANALYZE``, as
autovacuum would on a live database.

At each size:

* thread lookup: ``tickets.commands.tickets_by_keys`` for the keys a reply offers (two keys of
  random stored tickets and one unknown key), each call timed on its own;
* new-ticket routing: the real ``Router.route`` transaction (claim the intake row, look up its
  thread keys, find or create the contact, gather facts, evaluate the packaged rules, create the
  ticket, claim its keys, write the acknowledgement to the outbox, commit) on corpus root
  messages logged beforehand with fresh Message-IDs.

p50 and p99 per size; the figure is the median over runs. ``--quick``: 10k only. The full run
caps the largest size when filling it would not fit the time budget, and says so.
"""

from __future__ import annotations

import contextlib
import gc
import random
import re
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.figures import Context, Figure, check, med, pct, row

SIZES = (10_000, 100_000, 1_000_000)
GOAL_P99_MS = 1.0
FILL_BUDGET_SECONDS = 150.0  # the fill of the largest size must fit this (full run < 10 min)
_MID = re.compile(rb"^Message-ID:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)

# One statement per table per step. Logical ticket numbers %(lo)s..%(hi)s name the generated keys
# and Message-IDs; row ids are shifted past what the table holds (%(dt)s, %(dc)s, ...), since the
# measurements between two steps add rows of their own.
_C = "(GREATEST(%(clo)s::bigint, t / 5) + %(dc)s::bigint)"  # the contact of ticket t
_FILL = [
    """INSERT INTO contacts (id, name, created_at)
       SELECT c + %(dc)s::bigint, 'Customer ' || c, now() - interval '400 days'
       FROM generate_series(%(clo)s::bigint, %(chi)s::bigint) AS c""",
    """INSERT INTO contact_identities (id, contact_id, kind, address, identity)
       SELECT c + %(dci)s::bigint, c + %(dc)s::bigint, 'email', 'customer' || c || '@fill.example',
              'email:customer' || c || '@fill.example'
       FROM generate_series(%(clo)s::bigint, %(chi)s::bigint) AS c""",
    f"""INSERT INTO tickets (id, ref, status, priority, queue, category, tags, assignee, sla_policy,
                           subject, channel, contact_id, facts, received_at, created_at,
                           updated_at, last_inbound_at)
       SELECT t + %(dt)s::bigint, 'OD-' || (t + %(dt)s::bigint),
              (ARRAY['new','open','pending','resolved','closed','closed'])[1 + t %% 6],
              (ARRAY['low','normal','normal','high'])[1 + t %% 4],
              (ARRAY['general','billing','logistics'])[1 + t %% 3], NULL, '[]'::jsonb,
              CASE WHEN t %% 3 = 1 THEN (ARRAY['ana@example.com','bo@example.com'])[1 + t %% 2] END,
              NULL, 'Order ' || t || ' has not arrived yet', 'email', {_C},
              '{{"language": "en"}}'::jsonb, ts, ts, ts, ts
       FROM (SELECT t, now() - (t %% 400) * interval '1 day' AS ts
             FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS t) s""",
    """INSERT INTO thread_keys (key, ticket_id, created_at)
       SELECT 'email:mid:<fill-' || t || '-' || k || '@fill.example>', t + %(dt)s::bigint, now()
       FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS t, (VALUES ('a'), ('b')) AS v(k)""",
    """INSERT INTO intake (id, channel, external_id, received_at, logged_at, state, envelope,
                          raw_sha256, source, attempts, error, ticket_id, routed_at, swept_at)
       SELECT t + %(di)s::bigint, 'email', '<fill-' || t || '-a@fill.example>', now(), now(), 'routed',
              '{"channel": "email", "subject": "Order has not arrived yet"}'::jsonb,
              md5(t::text) || md5((t + 1)::text), 'imap:support', 0, NULL, t + %(dt)s::bigint,
              now(), NULL
       FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS t""",
    """INSERT INTO ticket_messages (id, ticket_id, intake_id, direction, channel, sender,
                                   recipients, subject, text, full_text, html, attachments,
                                   message_id, decision, created_at)
       SELECT t + %(dm)s::bigint, t + %(dt)s::bigint, t + %(di)s::bigint, 'inbound', 'email',
              'customer' || t / 5 || '@fill.example',
              '["support@acme.test"]'::jsonb, 'Order ' || t || ' has not arrived yet',
              'Hello, my order ' || t || ' has not arrived yet. Could you please check where it is? Thanks.',
              'Hello, my order ' || t || ' has not arrived yet. Could you please check where it is? Thanks.',
              NULL, '[]'::jsonb, '<fill-' || t || '-a@fill.example>',
              '{"kind": "new_ticket", "rules": []}'::jsonb, now()
       FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS t""",
    f"""INSERT INTO outbox (id, ticket_id, contact_id, channel, kind, recipient, idempotency_key, payload,
                          state, attempts, next_attempt_at, claimed_at, provider_id, last_error,
                          created_at, sent_at)
       SELECT t + %(do)s::bigint, t + %(dt)s::bigint, {_C}, 'email', 'ack',
              'customer' || t / 5 || '@fill.example',
              '<fill-' || t || '-b@fill.example>', '{{"subject": "We got your message"}}'::jsonb,
              'sent', 1, now() - (t %% 400) * interval '1 day', NULL, 'sink', NULL,
              now() - (t %% 400) * interval '1 day', now() - (t %% 400) * interval '1 day'
       FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS t""",
]
_SEQUENCES = ("contacts", "contact_identities", "tickets", "intake", "ticket_messages", "outbox")


def _fill(conn: Any, url: str, lo: int, hi: int) -> float:
    """Add tickets ``lo``..``hi``: two connections (the harness is idle meanwhile, PostgreSQL
    gets both cores), each one transaction, then ``ANALYZE``."""
    t = time.perf_counter()

    def top(table: str) -> int:
        return int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0])

    clo, chi = (lo + 4) // 5, hi // 5
    params = {
        "lo": lo, "hi": hi, "clo": clo, "chi": chi,
        "dt": top("tickets") - (lo - 1), "di": top("intake") - (lo - 1),
        "dm": top("ticket_messages") - (lo - 1), "do": top("outbox") - (lo - 1),
        "dc": top("contacts") - (clo - 1), "dci": top("contact_identities") - (clo - 1),
    }
    errors: list[BaseException] = []

    def load(statements: list[str]) -> None:
        try:
            with psycopg.connect(url) as c, c.transaction():
                # A bulk load, as pg_restore --disable-triggers does it: the rows are consistent
                # by construction, so the per-row foreign-key triggers are skipped (needs a
                # superuser; the figure's measurements run with them on).
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege), c.transaction():
                    c.execute("SET LOCAL session_replication_role = replica")
                for sql in statements:
                    c.execute(sql, params)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    # tickets + thread keys (+ contacts) | intake rows + messages + outbox: about even halves.
    threads = [threading.Thread(target=load, args=(_FILL[:4],)),
               threading.Thread(target=load, args=(_FILL[4:],))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    for table in _SEQUENCES:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
        )
    conn.execute("ANALYZE")
    return time.perf_counter() - t


def _timed(fn: Callable[[], Any], count: int, warm: int = 20) -> list[float]:
    for _ in range(warm):
        fn()
    gc.collect()
    gc.disable()
    samples = []
    clock = time.perf_counter
    try:
        for _ in range(count):
            t = clock()
            fn()
            samples.append((clock() - t) * 1000)
    finally:
        gc.enable()
    return samples


class _Routing:
    """Corpus root messages parsed once; logged as fresh intake rows for each measurement."""

    def __init__(self, ctx: Context, url: str) -> None:
        from bench.corpus import Corpus
        from bench.omnidesk_ingest import DOMAIN, RULES_FILE
        from config.settings import Settings
        from intake.blobs import FileBlobStore
        from intake.log import IntakeLog
        from routing.router import Router
        from routing.rules import load_rules
        from tickets.db import Database

        self.tmp = ctx.workdir / "thread-lookup-blobs"
        settings = Settings(_env_file=None, data_dir=self.tmp, database_url=url,  # type: ignore[call-arg]
                            smtp_domains=(DOMAIN,), support_address=f"support@{DOMAIN}",
                            rules_file=RULES_FILE)
        self.db = Database(url)
        rules = load_rules(RULES_FILE)
        from intake.registry import Registry

        blobs = FileBlobStore(self.tmp)
        self.router = Router(self.db, settings, composer=Registry.offline(settings, self.db, blobs),
                             rules=lambda: rules)
        self.log = IntakeLog(self.db, blobs, on_logged=None)
        corpus = Corpus.load(ctx.corpus_dir())
        self.roots = [_MID.sub(b"", m.raw, count=1) for m in corpus.messages if m.parent_id is None]
        self.round = 0

    def prepare(self, count: int) -> list[int]:
        from intake.email.parse import parse_email

        self.round += 1
        ids = []
        now = datetime.now(UTC)
        for i in range(count):
            raw = (f"Message-ID: <route-{self.round}-{i}@customer.example>\r\n".encode()
                   + self.roots[i % len(self.roots)])
            envelope = parse_email(raw, blobs=self.log.blobs, received_at=now,
                                   recipients=["support@acme.test"])
            ids.append(self.log.accept(envelope, raw, source="bench").intake_id)
        return ids

    def close(self) -> None:
        self.db.dispose()


def _measure(ctx: Context, url: str, routing: _Routing, tickets: int) -> dict[str, Any]:
    from tickets.commands import tickets_by_keys
    from tickets.db import Database

    lookups, routes = (500, 100) if ctx.quick else (2000, 200)
    db = Database(url)
    rng = random.Random(tickets)
    try:
        with db.engine.connect() as conn:
            # Timed: the lookup statement as the router runs it, inside an open transaction
            # (BEGIN and COMMIT are the routing transaction's, timed in the routing figure).
            samples: list[float] = []
            clock = time.perf_counter
            for i in range(lookups + 20):
                a, b = rng.randint(1, tickets), rng.randint(1, tickets)
                keys = [f"email:mid:<fill-{a}-a@fill.example>", f"email:mid:<fill-{b}-b@fill.example>",
                        f"mid:<unknown-{rng.random()}@elsewhere.example>"]
                with conn.begin():
                    conn.exec_driver_sql("SELECT 1")
                    t = clock()
                    found = tickets_by_keys(conn, keys)
                    elapsed = clock() - t
                assert len(found) == 2, found
                if i >= 20:  # warm-up
                    samples.append(elapsed * 1000)
            lookup_ms = samples
    finally:
        db.dispose()
    ids = iter(routing.prepare(routes + 20))

    def route() -> None:
        routed = routing.router.route(next(ids))
        assert routed is not None and routed.new_ticket

    route_ms = _timed(route, routes)
    return {
        "tickets": tickets,
        "lookup_ms": {"p50": pct(lookup_ms, 50), "p99": pct(lookup_ms, 99),
                      "mean": statistics.fmean(lookup_ms), "n": len(lookup_ms)},
        "route_ms": {"p50": pct(route_ms, 50), "p99": pct(route_ms, 99),
                     "mean": statistics.fmean(route_ms), "n": len(route_ms)},
    }


def run(ctx: Context) -> Figure:
    from tests.peers.postgres import fresh_database
    from tickets.db import Database
    from tickets.migrate import upgrade

    fig = Figure("thread_lookup", "4. Thread lookup and ticket creation (PostgreSQL)")
    sizes = SIZES[:1] if ctx.quick else SIZES
    services = ctx.services()
    results: dict[int, list[dict[str, Any]]] = {}
    fills: dict[int, float] = {}
    capped: str | None = None
    with fresh_database(services.postgres) as url:
        db = Database(url)
        upgrade(db)
        db.dispose()
        routing = _Routing(ctx, url)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                have = 0
                for size in sizes:
                    if have and fills:
                        rate = have / sum(fills.values())  # tickets per second so far
                        projected = (size - have) / rate
                        if projected > FILL_BUDGET_SECONDS:
                            capped = (f"{size:,} tickets skipped: filling would take ~{projected:.0f} s "
                                      f"at the measured {rate:,.0f} tickets/s (budget "
                                      f"{FILL_BUDGET_SECONDS:.0f} s)")
                            ctx.log("  " + capped)
                            break
                    fills[size] = _fill(conn, url, have + 1, size)
                    have = size
                    ctx.log(f"  filled to {size:,} tickets in {fills[size]:.1f} s")
                    results[size] = []
                    for _ in range(ctx.runs):
                        results[size].append(_measure(ctx, url, routing, size))
                    r = results[size]
                    ctx.log(f"  {size:>9,} tickets: lookup p50 "
                            f"{med(x['lookup_ms']['p50'] for x in r):.3f} ms p99 "
                            f"{med(x['lookup_ms']['p99'] for x in r):.3f} ms; new-ticket route p50 "
                            f"{med(x['route_ms']['p50'] for x in r):.2f} ms p99 "
                            f"{med(x['route_ms']['p99'] for x in r):.2f} ms")
        finally:
            routing.close()
    summary = {}
    for size, rs in results.items():
        summary[size] = {
            "lookup_p50_ms": med(x["lookup_ms"]["p50"] for x in rs),
            "lookup_p99_ms": med(x["lookup_ms"]["p99"] for x in rs),
            "route_p50_ms": med(x["route_ms"]["p50"] for x in rs),
            "route_p99_ms": med(x["route_ms"]["p99"] for x in rs),
            "fill_seconds": round(fills[size], 1),
        }
    for size, s in summary.items():
        label = f"{size // 1000:,}k" if size < 1_000_000 else f"{size // 1_000_000}M"
        fig.rows.append(row(f"4 thread lookup, {label} tickets: p50 / p99 (ms)",
                            f"{s['lookup_p50_ms']:.3f} / {s['lookup_p99_ms']:.3f}",
                            goal=f"p99 ≤ {GOAL_P99_MS:g} ms",
                            check=check(s["lookup_p99_ms"], "<=", GOAL_P99_MS, unit=" ms",
                                        what=f"thread lookup p99 at {label} tickets")))
        fig.rows.append(row(f"4 new-ticket routing txn, {label} tickets: p50 / p99 (ms)",
                            f"{s['route_p50_ms']:.2f} / {s['route_p99_ms']:.2f}",
                            goal=f"p99 ≤ {GOAL_P99_MS:g} ms",
                            check=check(s["route_p99_ms"], "<=", GOAL_P99_MS, unit=" ms",
                                        what=f"new-ticket routing p99 at {label} tickets")))
    if len(summary) > 1:
        first, last = summary[min(summary)], summary[max(summary)]
        fig.notes.append(
            f"thread lookup flatness: p50 at {max(summary):,} tickets is "
            f"{last['lookup_p50_ms'] / first['lookup_p50_ms']:.2f}× the p50 at {min(summary):,}; "
            f"routing {last['route_p50_ms'] / first['route_p50_ms']:.2f}×")
    if ctx.quick:
        fig.notes.append("thread lookup: quick mode measures 10k tickets only")
    if capped:
        fig.notes.append("thread lookup: CAPPED: " + capped)
    fig.notes.append(
        f"thread lookup: PostgreSQL ({services.postgres_source}); filled with INSERT ... SELECT "
        "generate_series (ticket + message + intake row + outbox row + 2 thread keys per ticket, "
        "1 contact per 5 tickets), then ANALYZE; lookup = 2 stored keys + 1 unknown per "
        "call; routing = the whole new-ticket transaction with the packaged rules, committed")
    fig.data = {"summary": {str(k): v for k, v in summary.items()},
                "runs": {str(k): v for k, v in results.items()}, "capped": capped}
    return fig
