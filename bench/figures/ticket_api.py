"""Figure 10: the agent's ticket list and one-ticket read at 10k, 100k and 1M tickets (PostgreSQL).

A fresh database migrated by the real migrations is filled in steps (10k, then up to 100k, then
up to 1M tickets) by PostgreSQL itself (``INSERT ... SELECT FROM generate_series``, see
``bench.figures.pg_fill``; the tickets' indexes are built after each step's load). The fields
of each ticket come from independent bytes of an MD5 of its number, so filters combine the way
they would on a real desk (status=open is 15 % of the tickets, queue=billing 25 %, both together
~3.75 %, not correlated through one counter): six statuses, five queues, four priorities, six
channels, 20 agents and 30 % unassigned, zero to two of ten tags, ten subject templates (with
order and invoice numbers), created over 400 days and updated since, 0.4 % merged into the
ticket before them; one inbound message per ticket, a contact per five tickets.

At each size, each call timed on its own through the store's functions (``tickets.search``)
in a fresh read session, as an HTTP handler would call them (the HTTP routes are not measured:
they are being written at the same time):

* the list filtered by status=open and one queue (the five queues in turn), 50 rows, newest
  updated first: the first page, and a deep page (its cursor 100 matches before the end);
* text search in subjects, first page: a word in 10 % of the tickets ("refund"), one in 1.1 %
  ("INV-3", the start of many invoice numbers) and one in a single subject (an invoice number);
* one ticket with its whole timeline, a random ticket each call.

Once, at the smallest size: the timeline read of a ticket with 10, 100 and 1,000 entries
(inbound mails with quoted history, replies, notes and events), whole, and its first 50 entries
paged; and what the list's indexes cost the writers (``_update_cost``: a follow-up's update of
updated_at under migration 0004's indexes and 0005's). That step sets the table's fillfactor to
90 (and rewrites it) so that updates can be HOT at all; the larger sizes are filled that way.

p50 and p99 per size; the figure is the median over runs. ``--quick``: 10k only, fewer calls.
The full run caps the largest size when filling it would not fit the time budget, and says so.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
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
TIMELINES = (10, 100, 1_000)
GOAL_P99_MS = 50.0
# The fill of the largest size must fit this: ~150 s for a million tickets on 2 busy cores.
FILL_BUDGET_SECONDS = 300.0
QUEUES = ("general", "billing", "logistics", "returns", "vip")
DEEP = 100  # the deep page starts this many matches before the end of the list
_TABLES = ("contacts", "contact_identities", "tickets", "ticket_messages")

# Byte k of the ticket's hash picks one field; %(lo)s..%(hi)s are logical ticket numbers, and
# row ids are shifted past what each table holds (%(dt)s, %(dc)s, ...).
_HASHED = """(SELECT t, h, created, created + (now() - created) * power(get_byte(h, 3) / 255.0, 4) AS updated
              FROM (SELECT t, h, now() - interval '400 days'
                                  * ((get_byte(h, 0) * 65536 + get_byte(h, 1) * 256 + get_byte(h, 2))
                                     / 16777216.0) AS created
                    FROM (SELECT t, decode(md5('ticket' || t), 'hex') AS h
                          FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS t) g) c) s"""
_STATUS = ("(ARRAY['new','open','open','open','pending','pending','escalated','resolved','resolved',"
           "'resolved','resolved','closed','closed','closed','closed','closed','closed','closed',"
           "'closed','closed'])[1 + get_byte(h, 4) %% 20]")
_MERGED = "get_byte(h, 12) = 0 AND t > %(lo)s"
_FILL_TICKETS = [
    *FILL_CONTACTS,
    f"""INSERT INTO tickets (id, ref, status, priority, queue, category, tags, assignee, sla_policy,
                           subject, channel, contact_id, facts, received_at, created_at, updated_at,
                           last_inbound_at, version, merged_into_id, resolved_at, closed_at,
                           reopened_count)
       SELECT t + %(dt)s::bigint, 'OD-' || (t + %(dt)s::bigint), status,
              (ARRAY['low','low','low','normal','normal','normal','normal','normal','normal',
                     'normal','normal','normal','normal','normal','normal','high','high','high',
                     'high','urgent'])[1 + get_byte(h, 5) %% 20],
              (ARRAY['general','general','general','general','general','general','general',
                     'general','billing','billing','billing','billing','billing','logistics',
                     'logistics','logistics','logistics','returns','returns','vip'])
                [1 + get_byte(h, 6) %% 20],
              CASE WHEN get_byte(h, 7) %% 10 < 4 THEN NULL
                   ELSE (ARRAY['shipping','billing','account','product','returns','other'])
                          [1 + get_byte(h, 7) %% 6] END,
              CASE get_byte(h, 8) %% 4 WHEN 2 THEN jsonb_build_array(tag1)
                                       WHEN 3 THEN jsonb_build_array(tag1, tag2)
                                       ELSE '[]'::jsonb END,
              CASE WHEN get_byte(h, 9) %% 10 < 3 THEN NULL
                   ELSE 'agent' || get_byte(h, 9) %% 20 || '@acme.test' END,
              NULL,
              (ARRAY['Order ' || t || ' has not arrived yet', 'Refund for order ' || t,
                     'Cannot log in to my account', 'Invoice INV-' || t || ' shows the wrong VAT',
                     'Damaged item in delivery ' || t, 'Change the address of order ' || t,
                     'Question about my subscription plan', 'Password reset link does not work',
                     'Cancel my subscription', 'Tracking ' || t || ' shows no update'])
                [1 + get_byte(h, 10) %% 10],
              (ARRAY['email','email','email','email','email','email','email','email','email',
                     'email','webform','webform','webform','webform','whatsapp','whatsapp',
                     'whatsapp','sms','phone','slack'])[1 + get_byte(h, 11) %% 20],
              GREATEST(%(clo)s::bigint, t / 5) + %(dc)s::bigint, '{{"language": "en"}}'::jsonb,
              created, created, updated, created, 1 + get_byte(h, 13) %% 4,
              CASE WHEN {_MERGED} THEN t - 1 + %(dt)s::bigint END,
              CASE WHEN status IN ('resolved', 'closed') THEN updated END,
              CASE WHEN status = 'closed' THEN updated END, 0
       FROM (SELECT s.*, CASE WHEN {_MERGED} THEN 'closed' ELSE {_STATUS} END AS status,
                    tags[1 + get_byte(h, 14) %% 10] AS tag1,
                    tags[1 + (get_byte(h, 14) + 1 + get_byte(h, 15) %% 9) %% 10] AS tag2
             FROM {_HASHED},
                  (SELECT ARRAY['vip','refund','damaged','late','b2b','wholesale','newsletter',
                                'complaint','gdpr','warranty'] AS tags) v) x""",
    f"""INSERT INTO ticket_links (ticket_id, other_id, kind, created_by, created_at)
        SELECT t + %(dt)s::bigint, t - 1 + %(dt)s::bigint, 'merged', 'agent0@acme.test', updated
        FROM {_HASHED} WHERE {_MERGED}""",
]
_FILL_MESSAGES = [
    f"""INSERT INTO ticket_messages (id, ticket_id, intake_id, direction, channel, sender,
                                   recipients, subject, text, full_text, html, attachments,
                                   message_id, decision, created_at, actor, event)
        SELECT t + %(dm)s::bigint, t + %(dt)s::bigint, NULL, 'inbound', 'email',
               'customer' || t / 5 || '@fill.example', '["support@acme.test"]'::jsonb,
               'About order ' || t,
               'Hello, I am writing about order ' || t || '. It has not arrived yet and the '
               'tracking page shows no update since last week. Could you please check where it '
               'is and let me know when I can expect it? Thanks a lot, a customer',
               'Hello, I am writing about order ' || t || '. It has not arrived yet and the '
               'tracking page shows no update since last week. Could you please check where it '
               'is and let me know when I can expect it? Thanks a lot, a customer',
               NULL, '[]'::jsonb, '<fill-' || t || '@fill.example>',
               '{{"kind": "new_ticket", "rules": ["billing"]}}'::jsonb, created, 'customer', NULL
        FROM {_HASHED}""",
]

# One long conversation: the customer writes (quoting what came before), an agent replies,
# notes and status changes in between.
_QUOTE = ("> On Monday the support team wrote: thank you for your patience, we have asked the "
          "carrier to trace the parcel and will get back to you as soon as we hear from them. ")
_TIMELINE = """INSERT INTO ticket_messages (id, ticket_id, intake_id, direction, channel, sender,
                                   recipients, subject, text, full_text, html, attachments,
                                   message_id, decision, created_at, actor, event)
    SELECT %(dm)s::bigint + i, %(tid)s, NULL,
           (ARRAY['inbound','outbound','note','event'])[1 + i %% 4], 'email',
           CASE i %% 4 WHEN 0 THEN 'customer@fill.example' ELSE 'agent1@acme.test' END,
           '["support@acme.test"]'::jsonb, 'Re: parcel ' || i,
           CASE i %% 4
             WHEN 0 THEN repeat('The parcel has still not arrived, this is my message ' || i || '. ', 10)
             WHEN 1 THEN repeat('We are sorry for the delay and have asked the carrier. ', 8)
             WHEN 2 THEN 'Called the carrier, they will trace it by Friday.'
             ELSE '' END,
           CASE i %% 4
             WHEN 0 THEN repeat('The parcel has still not arrived, this is my message ' || i || '. ', 10)
                         || E'\\n' || repeat(%(quote)s, 8)
             WHEN 1 THEN repeat('We are sorry for the delay and have asked the carrier. ', 8)
             WHEN 2 THEN 'Called the carrier, they will trace it by Friday.'
             ELSE '' END,
           NULL, '[]'::jsonb,
           CASE WHEN i %% 4 < 2 THEN '<timeline-' || %(tid)s || '-' || i || '@fill.example>' END,
           CASE WHEN i %% 4 = 0 THEN '{"kind": "follow_up"}'::jsonb END,
           now() - interval '1 minute' * (%(n)s - i),
           CASE i %% 4 WHEN 0 THEN 'customer' WHEN 3 THEN 'system' ELSE 'agent1@acme.test' END,
           CASE WHEN i %% 4 = 3 THEN jsonb_build_object('type', 'status', 'from', 'open',
                                                        'to', 'pending') END
    FROM generate_series(1, %(n)s) AS i"""


def _fill(conn: Any, url: str, lo: int, hi: int) -> float:
    """Add tickets ``lo``..``hi``: tickets (with contacts and links) and their messages, each
    in its own connection, then ``ANALYZE``."""
    t = time.perf_counter()
    top = max_ids(conn, _TABLES)
    clo, chi = (lo + 4) // 5, hi // 5
    params = {
        "lo": lo, "hi": hi, "clo": clo, "chi": chi,
        "dt": top["tickets"] - (lo - 1), "dm": top["ticket_messages"] - (lo - 1),
        "dc": top["contacts"] - (clo - 1), "dci": top["contact_identities"] - (clo - 1),
    }
    with indexes_rebuilt(conn, "tickets"):
        load_parallel(url, [_FILL_TICKETS, _FILL_MESSAGES], params)
    reset_sequences(conn, _TABLES)
    return time.perf_counter() - t


def _add_timelines(conn: Any) -> dict[int, str]:
    """A ticket per length in ``TIMELINES`` with that many entries; returns length -> ref."""
    refs = {}
    for n in TIMELINES:
        tid = int(conn.execute(
            """INSERT INTO tickets (ref, status, priority, queue, category, tags, assignee, subject,
                                    channel, contact_id, facts, received_at, created_at,
                                    updated_at, last_inbound_at, version, reopened_count)
               VALUES (NULL, 'pending', 'high', 'logistics', 'shipping', '["late"]'::jsonb,
                       'agent1@acme.test', %s, 'email', (SELECT MIN(id) FROM contacts), '{}'::jsonb,
                       now(), now(), now(), now(), %s, 0)
               RETURNING id""", (f"A conversation of {n} entries", n)).fetchone()[0])
        ref = f"OD-{tid}"
        conn.execute("UPDATE tickets SET ref = %s WHERE id = %s", (ref, tid))
        top = max_ids(conn, ["ticket_messages"])["ticket_messages"]
        conn.execute(_TIMELINE, {"dm": top, "tid": tid, "n": n, "quote": _QUOTE})
        refs[n] = ref
    reset_sequences(conn, ["tickets", "ticket_messages"])
    return refs


def _stats(samples: list[float]) -> dict[str, Any]:
    return {"p50": pct(samples, 50), "p99": pct(samples, 99), "mean": statistics.fmean(samples),
            "n": len(samples)}


_OPEN_IN_QUEUE = "status = 'open' AND queue = :queue AND merged_into_id IS NULL"


def _deep_cursor(session: Any, queue: str) -> str | None:
    """A cursor on the match ``DEEP + 1`` rows before the end of status=open & ``queue``, so
    its page holds the 50 rows after it (None when the list is shorter than that)."""
    from sqlalchemy import text

    # The bench positions a cursor deep in the list without paging there first.
    from tickets.search import _encode_cursor

    total = int(session.execute(text(f"SELECT count(*) FROM tickets WHERE {_OPEN_IN_QUEUE}"),
                                {"queue": queue}).scalar_one())
    if total <= DEEP + 1:
        return None
    updated, ticket_id = session.execute(text(
        f"SELECT updated_at, id FROM tickets WHERE {_OPEN_IN_QUEUE} "
        "ORDER BY updated_at DESC, id DESC OFFSET :skip LIMIT 1"),
        {"queue": queue, "skip": total - DEEP - 1}).one()
    return _encode_cursor("updated", updated, int(ticket_id))


def _measure(ctx: Context, url: str, size: int, timelines: dict[int, str], *,
             with_timelines: bool) -> dict[str, Any]:
    from sqlalchemy import text

    from tickets.db import Database
    from tickets.search import TicketFilter, get_ticket_with_timeline, search_tickets

    calls = 100 if ctx.quick else 400
    few = max(20, calls // 4)
    db = Database(url)
    rng = random.Random(size)
    try:
        with db.read() as session:
            deep = {q: _deep_cursor(session, q) for q in QUEUES}
            max_id = int(session.execute(text("SELECT MAX(id) FROM tickets")).scalar_one())
            # The newest invoice's number is in one subject only (no larger number starts with
            # it): the rare end of text search.
            rare = str(session.execute(text(
                "SELECT subject FROM tickets WHERE subject LIKE 'Invoice INV-%' "
                "AND merged_into_id IS NULL ORDER BY id DESC LIMIT 1")).scalar_one()).split()[1]
        turn = iter(range(10**12))

        def list_page(deep_page: bool) -> Callable[[], None]:
            def call() -> None:
                queue = QUEUES[next(turn) % len(QUEUES)]  # the queues in turn
                with db.read() as session:
                    page = search_tickets(session, TicketFilter(status="open", queue=queue),
                                          cursor=deep[queue] if deep_page else None, limit=50)
                assert len(page.items) == 50, (queue, len(page.items))
            return call

        def text_search(word: str, matches: int | None = None) -> Callable[[], None]:
            def call() -> None:
                with db.read() as session:
                    page = search_tickets(session, TicketFilter(text=word), limit=50)
                assert len(page.items) == (matches or 50), (word, len(page.items))
            return call

        long_ones = set(timelines.values())

        def one_ticket() -> None:
            ref = f"OD-{rng.randint(1, max_id)}"
            while ref in long_ones:  # a generated ticket; the long timelines are measured apart
                ref = f"OD-{rng.randint(1, max_id)}"
            with db.read() as session:
                found = get_ticket_with_timeline(session, ref)
            assert found is not None and found["message_count"] == 1, ref

        def timeline(ref: str, limit: int | None = None) -> Callable[[], None]:
            def call() -> None:
                with db.read() as session:
                    found = get_ticket_with_timeline(session, ref, timeline_limit=limit)
                assert found is not None and found["messages"], ref
            return call

        out: dict[str, Any] = {
            "tickets": size,
            "list_first_ms": _stats(timed(list_page(False), calls)),
            "list_deep_ms": _stats(timed(list_page(True), calls)),
            "text_common_ms": _stats(timed(text_search("refund"), few)),
            # INV-3, INV-30..39, INV-300..399, ...: 1.1 % of the tickets at any size.
            "text_medium_ms": _stats(timed(text_search("INV-3"), few, warm=3)),
            "text_rare_ms": _stats(timed(text_search(rare, 1), few, warm=3)),
            "ticket_ms": _stats(timed(one_ticket, calls)),
        }
        if with_timelines:
            out["timeline_ms"] = {str(n): _stats(timed(timeline(ref), few if n >= 1000 else calls))
                                  for n, ref in timelines.items()}
            out["timeline_ms"]["first_50"] = _stats(timed(timeline(timelines[max(timelines)], 50), calls))
        return out
    finally:
        db.dispose()


# What the list costs the writers: every routed message and agent action updates
# tickets.updated_at. Before migration 0005 no index held updated_at, so such an update could be
# HOT (no index entry written, when the row's page has room); now it writes an entry into every
# index of the table. Measured on the table as filled, under three index sets: migration 0004's
# (the four single-column indexes), 0005's B-trees alone, and 0005 as migrated (with the trigram
# index). Server-side, in one loop of single-row UPDATEs each committed with
# synchronous_commit off, so the disk's flush (the same for all three) does not drown it.
_INDEXES_0004 = [
    "CREATE INDEX ix_tickets_status ON tickets (status)",
    "CREATE INDEX ix_tickets_queue ON tickets (queue)",
    "CREATE INDEX ix_tickets_assignee ON tickets (assignee)",
    "CREATE INDEX ix_tickets_contact_id ON tickets (contact_id)",
]
_FOLLOW_UPS = """DO $$
DECLARE tid bigint;
BEGIN
  PERFORM setseed(0.5);
  FOR i IN 1..{n} LOOP
    tid := {low} + floor(random() * {span})::bigint;
    UPDATE tickets SET updated_at = now(), last_inbound_at = now() WHERE id = tid;
    COMMIT;
  END LOOP;
END $$"""


def _indexes(conn: Any) -> dict[str, str]:
    """The tickets' indexes that back no constraint: name -> definition."""
    return dict(conn.execute(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
           WHERE i.schemaname = current_schema() AND i.tablename = 'tickets'
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""").fetchall())


def _use_indexes(conn: Any, definitions: list[str]) -> None:
    for name in _indexes(conn):
        conn.execute(f'DROP INDEX "{name}"')
    for ddl in definitions:
        conn.execute(ddl)


def _updates(conn: Any) -> tuple[int, int]:
    """(HOT updates, all updates) of tickets so far, this connection's own included."""
    # Statistics reach shared memory when a transaction ends, at most once a second: force it.
    conn.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+
    row = conn.execute("SELECT pg_stat_get_tuples_hot_updated('tickets'::regclass), "
                       "pg_stat_get_tuples_updated('tickets'::regclass)").fetchone()
    return int(row[0]), int(row[1])


def _update_cost(conn: Any, runs: int, n: int) -> dict[str, dict[str, float]]:
    """µs, WAL bytes and the HOT share per follow-up update, per index set (median of runs)."""
    # Room on every page, as a table that lives with updates and autovacuum has (after a bulk
    # load the pages are full, and no update could be HOT whatever the indexes).
    conn.execute("ALTER TABLE tickets SET (fillfactor = 90)")
    conn.execute("VACUUM FULL tickets")
    migrated = _indexes(conn)
    sets = {
        "0004": _INDEXES_0004,
        "0005 B-trees": [d for name, d in migrated.items() if name != "ix_tickets_subject_trgm"],
        "0005": list(migrated.values()),
    }
    low, high = (int(x) for x in conn.execute("SELECT min(id), max(id) FROM tickets").fetchone())
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sets}
    conn.execute("SET synchronous_commit = off")
    for _ in range(runs):
        for name, definitions in sets.items():  # interleaved, so a busy moment hits all alike
            _use_indexes(conn, definitions)
            conn.execute("VACUUM tickets")
            hot0, all0 = _updates(conn)
            wal0 = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            t = time.perf_counter()
            # A DO block takes no parameters; both are integers of ours.
            conn.execute(_FOLLOW_UPS.format(n=int(n), low=low, span=high - low))
            seconds = time.perf_counter() - t
            wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (wal0,)).fetchone()[0]
            hot, every = _updates(conn)
            samples[name].append((seconds / n * 1e6, float(wal) / n, (hot - hot0) / max(1, every - all0)))
    conn.execute("RESET synchronous_commit")
    _use_indexes(conn, list(migrated.values()))
    return {name: {"us": med(x[0] for x in xs), "wal_bytes": med(x[1] for x in xs),
                   "hot_share": med(x[2] for x in xs)} for name, xs in samples.items()}


def _label(size: int) -> str:
    return f"{size // 1000:,}k" if size < 1_000_000 else f"{size // 1_000_000}M"


def _ms(s: dict[str, Any]) -> str:
    return f"{s['p50']:.2f} / {s['p99']:.2f}"


def run(ctx: Context) -> Figure:
    fig = Figure("ticket_api", "10. Ticket list and one-ticket read (PostgreSQL)")
    sizes = SIZES[:1] if ctx.quick else SIZES
    services = ctx.services()
    results: dict[int, list[dict[str, Any]]] = {}
    steps = FillSteps(sizes, FILL_BUDGET_SECONDS, ctx.log)
    timelines: dict[int, str] = {}
    update_cost: dict[str, dict[str, float]] = {}
    update_size = 0
    with migrated_database(services.postgres) as url, psycopg.connect(url, autocommit=True) as conn:
        trigram = ("with the pg_trgm index" if conn.execute(
            "SELECT 1 FROM pg_indexes WHERE indexname = 'ix_tickets_subject_trgm'").fetchone()
            else "WITHOUT a trigram index (pg_trgm could not be created): rare words read every row")
        for size in steps.run(lambda lo, hi: _fill(conn, url, lo, hi)):
            if not timelines:
                timelines = _add_timelines(conn)
            # The timeline lengths once: a ticket's own entries do not depend on the table.
            results[size] = [_measure(ctx, url, size, timelines, with_timelines=size == sizes[0])
                             for _ in range(ctx.runs)]
            if not update_cost:
                update_cost = _update_cost(conn, ctx.runs, 2_000 if ctx.quick else 10_000)
                update_size = size
            r = results[size]
            ctx.log(f"  {size:>9,} tickets: list p99 first {med(x['list_first_ms']['p99'] for x in r):.2f}"
                    f" ms, deep {med(x['list_deep_ms']['p99'] for x in r):.2f} ms; one ticket p99 "
                    f"{med(x['ticket_ms']['p99'] for x in r):.2f} ms; text p99 common "
                    f"{med(x['text_common_ms']['p99'] for x in r):.2f} ms, 1 % "
                    f"{med(x['text_medium_ms']['p99'] for x in r):.2f} ms, rare "
                    f"{med(x['text_rare_ms']['p99'] for x in r):.2f} ms")
    fills, capped = steps.fills, steps.capped
    summary: dict[int, dict[str, dict[str, float]]] = {}
    for size, rs in results.items():
        summary[size] = {key: {q: med(x[key][q] for x in rs) for q in ("p50", "p99")}
                         for key in ("list_first_ms", "list_deep_ms", "text_common_ms",
                                     "text_medium_ms", "text_rare_ms", "ticket_ms")}
    measured = [  # (key, what, short name)
        ("list_first_ms", "ticket list status=open & queue, first page", "first page"),
        ("list_deep_ms", f"ticket list status=open & queue, deep page ({DEEP} from the end)",
         "deep page"),
        ("ticket_ms", "one ticket with its timeline", "one ticket"),
        ("text_common_ms", "ticket list, text search in subjects, word in 10 %", "10 % word"),
        ("text_medium_ms", "ticket list, text search in subjects, word in 1 %", "1 % word"),
        ("text_rare_ms", "ticket list, text search in subjects, one match", "unique word"),
    ]
    for key, what, _ in measured:
        for size, s in summary.items():
            label = _label(size)
            fig.rows.append(row(f"10 {what}, {label} tickets: p50 / p99 (ms)", _ms(s[key]),
                                goal=f"p99 ≤ {GOAL_P99_MS:g} ms",
                                check=check(s[key]["p99"], "<=", GOAL_P99_MS, unit=" ms",
                                            what=f"{what} p99 at {label} tickets")))
    lines = {k: {q: med(x["timeline_ms"][k][q] for x in results[sizes[0]]) for q in ("p50", "p99")}
             for k in results[sizes[0]][0]["timeline_ms"]}
    for n in TIMELINES:
        fig.rows.append(row(f"10 timeline read, {n:,} entries: p50 / p99 (ms)", _ms(lines[str(n)])))
    fig.rows.append(row(f"10 timeline read, first 50 of {max(TIMELINES):,} entries: p50 / p99 (ms)",
                        _ms(lines["first_50"])))
    for name, label in (("0004", "0004's indexes"), ("0005 B-trees", "0005's B-trees"),
                        ("0005", "0005 with trigrams")):
        u = update_cost[name]
        fig.rows.append(row(f"10 ticket update of a follow-up, {_label(update_size)}, {label}: "
                            "µs / WAL bytes (HOT)",
                            f"{u['us']:.0f} / {u['wal_bytes']:,.0f} ({u['hot_share']:.0%})"))
    if len(summary) > 1:
        first, last = summary[min(summary)], summary[max(summary)]
        fig.notes.append(
            # p50: the p99 of a few hundred calls on a shared machine is mostly its scheduler.
            f"ticket list flatness, p50 at {max(summary):,} tickets / p50 at {min(summary):,}: "
            + ", ".join(f"{short} {last[key]['p50'] / first[key]['p50']:.2f}×"
                        for key, _, short in measured))
    small, big = lines[str(min(TIMELINES))], lines[str(max(TIMELINES))]
    fig.notes.append(
        f"timeline read: {max(TIMELINES):,} entries take {big['p50'] / small['p50']:.0f}× the p50 of "
        f"{min(TIMELINES)} (~{(big['p50'] - small['p50']) / (max(TIMELINES) - min(TIMELINES)) * 1000:.0f} µs "
        "per entry, linear: every entry is read and turned into a dict); paged "
        f"(timeline_limit=50) it costs {lines['first_50']['p50']:.2f} ms whatever the length")
    if ctx.quick:
        fig.notes.append("ticket list: quick mode measures 10k tickets only")
    if capped:
        fig.notes.append("ticket list: CAPPED: " + capped)
    fig.notes.append(
        f"ticket list: PostgreSQL ({services.postgres_source}); tickets.search.search_tickets and "
        "get_ticket_with_timeline called directly in a fresh read session per call (not through "
        "HTTP); filled with INSERT ... SELECT generate_series (hashed, independent fields; one "
        "message per ticket; 1 contact per 5 tickets), indexes built after the load, then "
        f"ANALYZE; text search is ILIKE on subjects, {trigram} (see bench/README.md)")
    fig.data = {"summary": {str(k): v for k, v in summary.items()}, "timelines": lines,
                "update_cost": update_cost,
                "fill_seconds": {str(k): round(v, 1) for k, v in fills.items()},
                "runs": {str(k): v for k, v in results.items()}, "capped": capped}
    return fig
