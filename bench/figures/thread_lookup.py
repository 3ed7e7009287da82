"""Figure 4: thread lookup and new-ticket routing at 10k, 100k and 1M stored tickets (PostgreSQL).

A fresh database migrated by the real migrations is filled in steps (10k, then up to 100k, then
up to 1M tickets) with generated rows, inserted by PostgreSQL itself (``INSERT ... SELECT FROM
generate_series``, one statement per table per step: no router, no Python per row). Per ticket:
its inbound message, its intake row, its acknowledgement in the outbox and two thread keys; one
contact per five tickets (foreign-key triggers off during the load, as ``pg_restore
--disable-triggers`` does: the rows are consistent by construction; the tickets' indexes built
after it, as pg_restore does too). Then ``ANALYZE``, as autovacuum would on a live database.

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

import random
import re
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.figures import Context, Figure, check, med, pct, row
from bench.figures.pg_fill import (
    FILL_CONTACTS,
    FillSteps,
    indexes_rebuilt,
    load_parallel,
    max_ids,
    migrated_database,
    reset_sequences,
    timed,
)

SIZES = (10_000, 100_000, 1_000_000)
GOAL_P99_MS = 1.0
FILL_BUDGET_SECONDS = 150.0  # the fill of the largest size must fit this (full run < 10 min)
_MID = re.compile(rb"^Message-ID:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)

# One statement per table per step. Logical ticket numbers %(lo)s..%(hi)s name the generated keys
# and Message-IDs; row ids are shifted past what the table holds (%(dt)s, %(dc)s, ...), since the
# measurements between two steps add rows of their own.
_C = "(GREATEST(%(clo)s::bigint, t / 5) + %(dc)s::bigint)"  # the contact of ticket t
_FILL = [
    *FILL_CONTACTS,
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
    """Add tickets ``lo``..``hi``: two connections, each one transaction, then ``ANALYZE``."""
    t = time.perf_counter()
    top = max_ids(conn, _SEQUENCES)
    clo, chi = (lo + 4) // 5, hi // 5
    params = {
        "lo": lo, "hi": hi, "clo": clo, "chi": chi,
        "dt": top["tickets"] - (lo - 1), "di": top["intake"] - (lo - 1),
        "dm": top["ticket_messages"] - (lo - 1), "do": top["outbox"] - (lo - 1),
        "dc": top["contacts"] - (clo - 1), "dci": top["contact_identities"] - (clo - 1),
    }
    # tickets + thread keys (+ contacts) | intake rows + messages + outbox: about even halves.
    with indexes_rebuilt(conn, "tickets"):
        load_parallel(url, [_FILL[:4], _FILL[4:]], params)
    reset_sequences(conn, _SEQUENCES)
    return time.perf_counter() - t


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

    route_ms = timed(route, routes)
    return {
        "tickets": tickets,
        "lookup_ms": {"p50": pct(lookup_ms, 50), "p99": pct(lookup_ms, 99),
                      "mean": statistics.fmean(lookup_ms), "n": len(lookup_ms)},
        "route_ms": {"p50": pct(route_ms, 50), "p99": pct(route_ms, 99),
                     "mean": statistics.fmean(route_ms), "n": len(route_ms)},
    }


def run(ctx: Context) -> Figure:
    fig = Figure("thread_lookup", "4. Thread lookup and ticket creation (PostgreSQL)")
    sizes = SIZES[:1] if ctx.quick else SIZES
    services = ctx.services()
    results: dict[int, list[dict[str, Any]]] = {}
    steps = FillSteps(sizes, FILL_BUDGET_SECONDS, ctx.log)
    with migrated_database(services.postgres) as url:
        routing = _Routing(ctx, url)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for size in steps.run(lambda lo, hi: _fill(conn, url, lo, hi)):
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
    fills, capped = steps.fills, steps.capped
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
        "1 contact per 5 tickets), the tickets' indexes built after the load, then ANALYZE; lookup = 2 stored keys + 1 unknown per "
        "call; routing = the whole new-ticket transaction with the packaged rules, committed")
    fig.data = {"summary": {str(k): v for k, v in summary.items()},
                "runs": {str(k): v for k, v in results.items()}, "capped": capped}
    return fig
