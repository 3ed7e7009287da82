"""Helpers for the figures that fill PostgreSQL with generated rows and time calls against it.

The rows are made by PostgreSQL itself (``INSERT ... SELECT FROM generate_series``), one
statement per table per step, several connections at once: no Python per row.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = [
    "FILL_CONTACTS", "FillSteps", "indexes_rebuilt", "load_parallel", "max_ids", "migrated_database", "reset_sequences",
    "timed",
]

# Contacts %(clo)s..%(chi)s with one email identity each; ids shifted by %(dc)s and %(dci)s past
# what the tables hold.
FILL_CONTACTS = [
    """INSERT INTO contacts (id, name, created_at)
       SELECT c + %(dc)s::bigint, 'Customer ' || c, now() - interval '400 days'
       FROM generate_series(%(clo)s::bigint, %(chi)s::bigint) AS c""",
    """INSERT INTO contact_identities (id, contact_id, kind, address, identity)
       SELECT c + %(dci)s::bigint, c + %(dc)s::bigint, 'email', 'customer' || c || '@fill.example',
              'email:customer' || c || '@fill.example'
       FROM generate_series(%(clo)s::bigint, %(chi)s::bigint) AS c""",
]


@contextlib.contextmanager
def migrated_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, migrated by the real migrations; dropped afterwards."""
    from tests.peers.postgres import fresh_database
    from tickets.db import Database
    from tickets.migrate import upgrade

    with fresh_database(server_url) as url:
        db = Database(url)
        upgrade(db)
        db.dispose()
        yield url


@dataclass
class FillSteps:
    """Grow the database to each of ``sizes`` tickets in turn, measuring in between; a size
    whose fill would exceed ``budget`` seconds at the rate measured so far is skipped (and the
    ones after it), and ``capped`` says so."""

    sizes: Sequence[int]
    budget: float
    log: Callable[[str], None]
    fills: dict[int, float] = field(default_factory=dict)  # size -> seconds its fill took
    capped: str | None = None

    def run(self, fill: Callable[[int, int], float]) -> Iterator[int]:
        """Call ``fill(lo, hi)`` (tickets ``lo``..``hi``, returns its seconds) per size, then
        yield the size for the caller to measure."""
        have = 0
        for size in self.sizes:
            if have:
                rate = have / sum(self.fills.values())  # tickets per second so far
                projected = (size - have) / rate
                if projected > self.budget:
                    self.capped = (f"{size:,} tickets skipped: filling would take ~{projected:.0f} s "
                                   f"at the measured {rate:,.0f} tickets/s (budget {self.budget:.0f} s)")
                    self.log("  " + self.capped)
                    return
            self.fills[size] = fill(have + 1, size)
            have = size
            self.log(f"  filled to {size:,} tickets in {self.fills[size]:.1f} s")
            yield size


def max_ids(conn: Any, tables: Iterable[str]) -> dict[str, int]:
    """The largest id in each table (0 when empty): generated ids start after it."""
    return {t: int(conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {t}").fetchone()[0]) for t in tables}


def load_parallel(url: str, groups: Sequence[Sequence[str]], params: Mapping[str, Any]) -> None:
    """Run each group of statements in its own connection and transaction, all at once (the
    harness is idle meanwhile, so PostgreSQL gets every core)."""
    errors: list[BaseException] = []

    def load(statements: Sequence[str]) -> None:
        try:
            with psycopg.connect(url) as c, c.transaction():
                # A bulk load, as pg_restore --disable-triggers does it: the rows are consistent
                # by construction, so the per-row foreign-key triggers are skipped (needs a
                # superuser; the figures' measurements run with them on).
                with contextlib.suppress(psycopg.errors.InsufficientPrivilege), c.transaction():
                    c.execute("SET LOCAL session_replication_role = replica")
                for sql in statements:
                    c.execute(sql, params)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(group,)) for group in groups]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


@contextlib.contextmanager
def indexes_rebuilt(conn: Any, table: str) -> Iterator[None]:
    """Drop ``table``'s indexes that back no constraint for the load, and build them again from
    their own definitions afterwards, as pg_restore does: a million rows with random keys go
    into a B-tree (and a trigram index) far faster at once than one by one. The rebuilt
    indexes are compact, as after a REINDEX."""
    defs = conn.execute(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
           WHERE i.schemaname = current_schema() AND i.tablename = %s
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
        (table,),
    ).fetchall()
    for name, _ in defs:
        conn.execute(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, ddl in defs:
            conn.execute(ddl)
        conn.execute("RESET maintenance_work_mem")


def reset_sequences(conn: Any, tables: Iterable[str]) -> None:
    """Move each table's id sequence past the generated ids, then ``ANALYZE`` (as autovacuum
    would on a live database) so the planner knows the new sizes."""
    for table in tables:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
        )
    conn.execute("ANALYZE")


def timed(fn: Callable[[], Any], count: int, warm: int = 20) -> list[float]:
    """Milliseconds of ``count`` calls of ``fn`` after ``warm`` untimed ones, the garbage
    collector off while timing (its pauses belong to no call in particular)."""
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
