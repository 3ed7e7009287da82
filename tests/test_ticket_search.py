"""The agent's ticket list (``tickets.search``) on SQLite and PostgreSQL: every filter narrows to
exactly the tickets it names, keyset pages visit each ticket once (with the documented meaning
while tickets change), cursors are checked, and one ticket reads with its whole timeline."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from sqlalchemy import event, insert, update

from tests.peers.postgres import fresh_database
from tickets.commands import add_message, create_ticket, find_or_create_contact
from tickets.db import Database
from tickets.migrate import upgrade
from tickets.models import Direction, Ticket, TicketLink, TicketMessage, table_of
from tickets.queries import get_ticket, ticket_summary
from tickets.search import (
    UNASSIGNED,
    BadCursor,
    BadFilter,
    Order,
    TicketFilter,
    get_ticket_with_timeline,
    search_tickets,
)

BASE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_tickets = table_of(Ticket)
_messages = table_of(TicketMessage)


@pytest.fixture(scope="module")
def pg_store(postgres_server: str) -> Iterator[Database]:
    """One migrated PostgreSQL database for the module, emptied before each test (creating and
    dropping a database per test took longer than the tests)."""
    with fresh_database(postgres_server) as url:
        store = Database(url)
        upgrade(store)
        yield store
        store.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        store: Database = request.getfixturevalue("pg_store")
        with store.write_connection() as conn:
            conn.exec_driver_sql("TRUNCATE tickets, ticket_messages, ticket_links, contacts, "
                                 "contact_identities RESTART IDENTITY CASCADE")
        yield store
        return
    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store)
    yield store
    store.dispose()


@dataclass
class Spec:
    """One generated ticket: what the filters look at, and its id and ref once stored."""

    status: str
    queue: str
    priority: str
    channel: str
    assignee: str | None
    category: str | None
    tags: list[str]
    contact: int
    subject: str
    created_at: datetime
    updated_at: datetime
    messages: int
    id: int = 0
    ref: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_SUBJECTS = ["Order {i} has not arrived", "Refund please for order {i}", "Login fails (case {i})",
             "50% off_code not applied {i}", "ORDER {i}: wrong colour", "Invoice {i} shows 50 off"]


def _specs(n: int = 30) -> list[Spec]:
    statuses = ["new", "open", "pending", "escalated", "resolved", "closed"]
    return [
        Spec(
            status=statuses[i % 6],
            queue=["general", "billing", "logistics"][(i // 2) % 3],
            priority=["low", "normal", "high", "urgent"][(i // 3) % 4],
            channel=["email", "webform", "whatsapp"][(i // 4) % 3],
            assignee=None if i % 4 == 0 else f"agent{i % 3}@acme.test",
            category=None if i % 3 == 0 else ["shipping", "billing"][i % 2],
            tags=[[], ["vip"], ["vip", "refund"], ["refund"], ["vip-gold"]][i % 5],
            contact=i % 4,
            subject=_SUBJECTS[i % len(_SUBJECTS)].format(i=i),
            created_at=BASE + timedelta(hours=i),
            # A permutation of the creation order, so the two orders differ.
            updated_at=BASE + timedelta(hours=(i * 7) % n, minutes=30),
            messages=i % 3,
        )
        for i in range(n)
    ]


def _store(db: Database, specs: list[Spec]) -> list[Spec]:
    with db.write_connection() as conn:
        contacts = [
            find_or_create_contact(conn, identity=f"email:c{c}@example.com", kind="email",
                                   address=f"c{c}@example.com", name=f"Customer {c}").id
            for c in range(4)
        ]
        for s in specs:
            s.id, s.ref = create_ticket(
                conn, prefix="OD", contact_id=contacts[s.contact], channel=s.channel, subject=s.subject,
                queue=s.queue, priority=s.priority, status=s.status, received_at=s.created_at,
                category=s.category, tags=s.tags, assignee=s.assignee,
            )
            conn.execute(update(_tickets).where(_tickets.c.id == s.id)
                         .values(created_at=s.created_at, updated_at=s.updated_at))
            for k in range(s.messages):
                add_message(conn, s.id, direction=Direction.INBOUND, channel=s.channel, text=f"message {k}",
                            created_at=s.created_at + timedelta(minutes=k))
    return specs


def _all(db: Database, flt: TicketFilter | None = None, *, order: Order = "updated", limit: int = 7) -> list[str]:
    """Every ref the list yields, page after page."""
    refs: list[str] = []
    cursor = None
    with db.read() as session:
        while True:
            page = search_tickets(session, flt, cursor=cursor, limit=limit, order=order)
            refs += [item["ref"] for item in page.items]
            if page.next_cursor is None:
                return refs
            assert len(page.items) == limit
            cursor = page.next_cursor


def _newest(specs: list[Spec], keep: Callable[[Spec], bool], order: Order = "updated") -> list[str]:
    chosen = [s for s in specs if keep(s)]
    chosen.sort(key=lambda s: (s.updated_at if order == "updated" else s.created_at, s.id), reverse=True)
    return [s.ref for s in chosen]


_CASES: list[tuple[str, dict[str, Any], Callable[[Spec], bool]]] = [
    ("one status", {"status": "open"}, lambda s: s.status == "open"),
    ("several statuses", {"status": ["new", "open", "pending"]}, lambda s: s.status in {"new", "open", "pending"}),
    ("queue", {"queue": "billing"}, lambda s: s.queue == "billing"),
    ("assignee", {"assignee": "agent1@acme.test"}, lambda s: s.assignee == "agent1@acme.test"),
    ("unassigned", {"assignee": UNASSIGNED}, lambda s: s.assignee is None),
    ("priority", {"priority": "urgent"}, lambda s: s.priority == "urgent"),
    ("channel", {"channel": "webform"}, lambda s: s.channel == "webform"),
    # "vip" is a whole tag: a ticket tagged "vip-gold" is not a vip ticket.
    ("tag", {"tag": "vip"}, lambda s: "vip" in s.tags),
    ("category", {"category": "shipping"}, lambda s: s.category == "shipping"),
    ("text, any case", {"text": "order"}, lambda s: "order" in s.subject.lower()),
    ("text, every word", {"text": "  ORDER   arrived "}, lambda s: "order" in s.subject.lower()
     and "arrived" in s.subject.lower()),
    # LIKE's wildcards are plain characters in a search.
    ("text with % and _", {"text": "50% off_code"}, lambda s: "50% off_code" in s.subject),
    ("created range", {"created_from": BASE + timedelta(hours=5), "created_to": BASE + timedelta(hours=12)},
     lambda s: BASE + timedelta(hours=5) <= s.created_at < BASE + timedelta(hours=12)),
    ("updated range", {"updated_from": BASE + timedelta(hours=20)},
     lambda s: s.updated_at >= BASE + timedelta(hours=20)),
    ("combined", {"status": ["new", "open", "pending", "escalated"], "queue": "general", "assignee": UNASSIGNED},
     lambda s: s.status in {"new", "open", "pending", "escalated"} and s.queue == "general" and s.assignee is None),
    ("combined with text and tag", {"tag": "refund", "text": "order", "priority": "low"},
     lambda s: "refund" in s.tags and "order" in s.subject.lower() and s.priority == "low"),
]


@pytest.mark.parametrize("order", ["updated", "created"])
def test_every_filter_narrows_to_exactly_its_tickets(db: Database, order: Order) -> None:
    specs = _store(db, _specs())
    assert _all(db, order=order) == _newest(specs, lambda s: True, order)
    for name, fields, keep in _CASES:
        expected = _newest(specs, keep, order)
        assert 0 < len(expected) < len(specs), f"{name}: the case must narrow, and not to nothing"
        assert _all(db, TicketFilter(**fields), order=order) == expected, name
    contact_id = _contact_ids(db, specs)[2]
    assert _all(db, TicketFilter(contact_id=contact_id), order=order) == _newest(specs, lambda s: s.contact == 2, order)
    assert _all(db, TicketFilter(queue="billing", status="closed", tag="nope")) == []


def _contact_ids(db: Database, specs: list[Spec]) -> dict[int, int]:
    with db.read() as session:
        return {s.contact: session.get_one(Ticket, s.id).contact_id for s in specs}


def test_items_have_the_summary_shape_with_counts_of_their_own_messages(db: Database) -> None:
    specs = _store(db, _specs(12))
    with db.read() as session:
        page = search_tickets(session, limit=50)
        tickets = {t.ref: t for t in session.query(Ticket)}
        for item in page.items:
            spec = next(s for s in specs if s.ref == item["ref"])
            expected = ticket_summary(tickets[item["ref"]], spec.messages) | {"version": 1, "merged_into": None}
            assert item == expected
    assert {i["message_count"] for i in page.items} == {0, 1, 2}
    assert page.items[0]["contact"].startswith("c") and page.items[0]["contact_name"].startswith("Customer ")


def test_a_page_is_one_statement_whatever_its_size(db: Database) -> None:
    _store(db, _specs(40))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.read() as session:
            for limit in (5, 40):
                statements.clear()
                page = search_tickets(session, TicketFilter(status=["new", "open", "closed"]), limit=limit)
                assert page.items
                assert len(statements) == 1, statements
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


@pytest.mark.parametrize("order", ["updated", "created"])
def test_ties_on_the_sort_time_are_broken_by_id_across_pages(db: Database, order: Order) -> None:
    specs = _specs(17)
    for s in specs:  # three distinct instants for seventeen tickets
        s.created_at = s.updated_at = BASE + timedelta(minutes=len(s.subject) % 3)
    _store(db, specs)
    for limit in (1, 2, 4, 5, 16):
        refs = _all(db, order=order, limit=limit)
        assert refs == _newest(specs, lambda s: True, order), limit


def test_paging_while_tickets_are_created_and_updated(db: Database) -> None:
    """Newest updated first is a live view: tickets created meanwhile land before page 1, a
    ticket updated meanwhile moves to the front (seen once if it was already shown, skipped by
    the later pages if not), and every other ticket is shown exactly once."""
    specs = _store(db, _specs(30))
    shown: list[str] = []
    with db.read() as session:
        page = search_tickets(session, limit=8)
    shown += [i["ref"] for i in page.items]
    seen, unseen = shown[3], _newest(specs, lambda s: True)[20]
    with db.write_connection() as conn:
        for ref in (seen, unseen):
            conn.execute(update(_tickets).where(_tickets.c.ref == ref).values(updated_at=datetime.now(UTC)))
        new_ids = [create_ticket(conn, prefix="OD", contact_id=1, channel="email", subject=f"new {k}",
                                 queue="general", received_at=datetime.now(UTC))[1] for k in range(3)]
    cursor = page.next_cursor
    while cursor is not None:
        with db.read() as session:
            page = search_tickets(session, cursor=cursor, limit=8)
        shown += [i["ref"] for i in page.items]
        cursor = page.next_cursor
    assert len(shown) == len(set(shown)), "a ticket was shown twice"
    assert not set(new_ids) & set(shown)
    assert seen in shown and unseen not in shown
    assert set(shown) == {s.ref for s in specs} - {unseen}
    # A fresh walk starts with what changed.
    assert _all(db)[:5] == [*reversed(new_ids), unseen, seen]


def test_paging_by_creation_visits_every_existing_ticket_once_whatever_changes(db: Database) -> None:
    specs = _store(db, _specs(30))
    shown: list[str] = []
    cursor = None
    rounds = 0
    while True:
        with db.read() as session:
            page = search_tickets(session, cursor=cursor, limit=6, order="created")
        shown += [i["ref"] for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        rounds += 1
        with db.write_connection() as conn:  # between every two pages: an update and a new ticket
            conn.execute(update(_tickets).where(_tickets.c.id == specs[rounds * 3].id)
                         .values(updated_at=datetime.now(UTC), status="open"))
            create_ticket(conn, prefix="OD", contact_id=1, channel="email", subject=f"new {rounds}",
                          queue="general", received_at=datetime.now(UTC))
    assert shown == _newest(specs, lambda s: True, "created")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_a_cursor_not_made_by_this_list_is_refused_with_advice(db: Database) -> None:
    _store(db, _specs(10))
    with db.read() as session:
        good = search_tickets(session, limit=3).next_cursor
        assert good is not None and good.isascii() and "=" not in good and "+" not in good and "/" not in good
        other_order = search_tickets(session, limit=3, order="created").next_cursor
        assert other_order is not None
        decoded = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
        bad = [
            "not a cursor!", good[:-5], good + "x", _b64(b"\xff\xfe"), _b64(b"[1, 2]"), _b64(b"{}"),
            _b64(json.dumps(decoded | {"i": "12"}).encode()), _b64(json.dumps(decoded | {"i": True}).encode()),
            _b64(json.dumps(decoded | {"v": "yesterday"}).encode()),
            _b64(json.dumps(decoded | {"v": "2026-03-01T09:00:00"}).encode()), other_order,
        ]
        for cursor in bad:
            with pytest.raises(BadCursor, match="start again without a cursor") as caught:
                search_tickets(session, cursor=cursor, limit=3)
            assert isinstance(caught.value, ValueError)
        with pytest.raises(BadCursor, match="order=created"):
            search_tickets(session, cursor=other_order, limit=3)


def test_bad_filters_say_what_is_wrong() -> None:
    with pytest.raises(BadFilter, match="unknown status solved"):
        TicketFilter(status=["open", "solved"])
    with pytest.raises(BadFilter, match="unknown priority"):
        TicketFilter(priority="critical")
    with pytest.raises(BadFilter, match="created_to has no time zone"):
        TicketFilter(created_to=datetime(2026, 1, 1))
    assert TicketFilter(status="open") == TicketFilter(status=["open", "open"])
    assert TicketFilter(text="   ").text is None
    assert hash(TicketFilter(status=["open", "new"]))


def test_bad_limits_and_orders(db: Database) -> None:
    with db.read() as session:
        for limit in (0, 201):
            with pytest.raises(BadFilter, match="limit"):
                search_tickets(session, limit=limit)
        with pytest.raises(BadFilter, match="unknown order"):
            search_tickets(session, order="oldest")  # type: ignore[arg-type]


def _merge(db: Database, source: Spec, target: Spec) -> None:
    with db.write_connection() as conn:
        conn.execute(update(_tickets).where(_tickets.c.id == source.id)
                     .values(merged_into_id=target.id, status="closed"))
        conn.execute(insert(table_of(TicketLink)).values(
            ticket_id=source.id, other_id=target.id, kind="merged", created_by="ana@acme.test",
            created_at=BASE))


def test_merged_tickets_are_hidden_unless_asked_for(db: Database) -> None:
    specs = _store(db, _specs(12))
    source, target = specs[5], specs[2]
    _merge(db, source, target)
    assert source.ref not in _all(db)
    assert source.ref not in _all(db, TicketFilter(status="closed"))
    with db.read() as session:
        items = search_tickets(session, TicketFilter(status="closed", include_merged=True)).items
    merged = next(i for i in items if i["ref"] == source.ref)
    assert merged["merged_into"] == target.ref
    assert all(i["merged_into"] is None for i in items if i["ref"] != source.ref)


def _add_entries(db: Database, ticket_id: int) -> list[int]:
    """Seven entries of every kind; returns the ids of all the ticket's entries."""
    with db.write_connection() as conn:
        for k, direction in enumerate(["inbound", "outbound", "note", "event", "inbound", "event", "note"]):
            conn.execute(insert(_messages).values(
                ticket_id=ticket_id, direction=direction, channel="email", sender="c0@example.com",
                recipients=["support@acme.test"], subject="Re", text=f"entry {k}", full_text=f"entry {k}",
                attachments=[], created_at=BASE + timedelta(minutes=k),
                actor={"inbound": "customer", "event": "system"}.get(direction, "ana@acme.test"),
                event={"type": "status", "from": "new", "to": "open"} if direction == "event" else None,
            ))
        return [r.id for r in conn.execute(
            _messages.select().where(_messages.c.ticket_id == ticket_id).order_by(_messages.c.id))]


def test_one_ticket_with_its_whole_timeline_and_links(db: Database) -> None:
    specs = _store(db, _specs(8))
    ticket, merged, related = specs[0], specs[3], specs[6]
    ids = _add_entries(db, ticket.id)
    _merge(db, merged, ticket)
    with db.write_connection() as conn:
        conn.execute(insert(table_of(TicketLink)).values(
            ticket_id=ticket.id, other_id=related.id, kind="related", created_by="bo@acme.test",
            created_at=BASE + timedelta(days=1)))
        conn.execute(update(_tickets).where(_tickets.c.id == ticket.id).values(
            version=4, resolved_at=BASE + timedelta(days=2), reopened_count=1))
    with db.read() as session:
        out = get_ticket_with_timeline(session, ticket.ref.lower())
        plain = get_ticket(session, ticket.ref)
        assert get_ticket_with_timeline(session, "OD-999999") is None
    assert out is not None and plain is not None
    assert [m["id"] for m in out["messages"]] == ids
    # Messages in and out are counted; notes and events are not messages of the conversation.
    said = [m for m in out["messages"] if m["direction"] in ("inbound", "outbound")]
    assert 0 < len(said) < len(ids)
    assert out["message_count"] == len(said) == plain["message_count"]
    # What get_ticket says, and more.
    for key, value in plain.items():
        if key == "messages":
            assert [{k: m[k] for k in value[0]} for m in out["messages"]] == value
        else:
            assert out[key] == value, key
    events = [m for m in out["messages"] if m["direction"] == "event"]
    assert [m["event"] for m in events] == [{"type": "status", "from": "new", "to": "open"}] * 2
    assert {m["actor"] for m in out["messages"]} == {"customer", "system", "ana@acme.test"}
    assert out["version"] == 4 and out["reopened_count"] == 1 and out["closed_at"] is None
    assert out["resolved_at"] == (BASE + timedelta(days=2)).isoformat()
    assert out["merged_into"] is None and out["next_after_id"] is None
    assert out["links"] == [
        {"ref": merged.ref, "kind": "merged", "direction": "from", "created_at": BASE.isoformat()},
        {"ref": related.ref, "kind": "related", "direction": "to",
         "created_at": (BASE + timedelta(days=1)).isoformat()},
    ]


def test_a_merged_ticket_is_still_readable_and_says_where_it_went(db: Database) -> None:
    specs = _store(db, _specs(4))
    _merge(db, specs[1], specs[0])
    with db.read() as session:
        out = get_ticket_with_timeline(session, specs[1].ref)
    assert out is not None
    assert out["merged_into"] == specs[0].ref and out["status"] == "closed"
    assert out["links"] == [{"ref": specs[0].ref, "kind": "merged", "direction": "to",
                             "created_at": BASE.isoformat()}]


def test_a_long_timeline_pages_by_entry_id(db: Database) -> None:
    specs = _store(db, _specs(2))
    ids = _add_entries(db, specs[1].id)  # the ticket's first message and seven more
    assert len(ids) == specs[1].messages + 7
    with db.read() as session:
        whole = get_ticket_with_timeline(session, specs[1].ref)
    assert whole is not None
    said = sum(m["direction"] in ("inbound", "outbound") for m in whole["messages"])
    for limit in (1, 3, 7, 50):
        got: list[int] = []
        after = None
        with db.read() as session:
            while True:
                out = get_ticket_with_timeline(session, specs[1].ref, timeline_limit=limit, after_id=after)
                assert out is not None and out["message_count"] == said
                assert len(out["messages"]) <= limit
                got += [m["id"] for m in out["messages"]]
                after = out["next_after_id"]
                if after is None:
                    break
                assert after == got[-1]
        assert got == ids, limit
    with db.read() as session:
        with pytest.raises(BadFilter, match="timeline_limit"):
            get_ticket_with_timeline(session, specs[1].ref, timeline_limit=0)
        tail = get_ticket_with_timeline(session, specs[1].ref, after_id=ids[4])
    assert tail is not None and [m["id"] for m in tail["messages"]] == ids[5:]
    assert tail["message_count"] == said and tail["next_after_id"] is None


@pytest.mark.postgres
def test_without_pg_trgm_the_upgrade_goes_on_and_text_search_still_works(
    postgres_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A role that may not create extensions (no CREATE on its database) still migrates; the
    trigram index is left out, with a warning saying how to add it, and search reads rows."""
    role = f"omnidesk_limited_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        superuser = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (superuser and superuser[0]):
            pytest.skip("needs a superuser to create a role without CREATE on its database")
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        with fresh_database(postgres_server) as url:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
            parts = urlsplit(url)
            store = Database(urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}")))
            try:
                with caplog.at_level(logging.WARNING, logger="omnidesk.migrations"):
                    upgrade(store)
                assert "pg_trgm is not available" in caplog.text and "CREATE INDEX" in caplog.text
                with store.engine.connect() as conn:
                    indexes = set(conn.exec_driver_sql(
                        "SELECT indexname FROM pg_indexes WHERE tablename = 'tickets'").scalars())
                assert "ix_tickets_subject_trgm" not in indexes and "ix_tickets_updated" in indexes
                specs = _store(store, _specs(12))
                assert _all(store, TicketFilter(text="refund")) == _newest(specs, lambda s: "refund" in s.subject.lower())
            finally:
                store.dispose()
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
