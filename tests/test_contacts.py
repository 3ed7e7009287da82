"""Contacts: identities, search, merge and history, in the store (SQLite and PostgreSQL), through
the agent API of a running desk (customers writing in by email and the web form), and on the
command line."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update

from config.settings import Settings
from intake.envelope import Party
from omnidesk.cli import main
from tests.agent_desk import AgentDesk, running_desk
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import make_mail
from tickets.commands import add_message, add_outbox, create_ticket, find_or_create_contact
from tickets.contacts import (
    ContactConflict,
    ContactError,
    ContactInvalid,
    ContactNotFound,
    add_identity,
    contact_history,
    get_contact,
    identity_key,
    list_contacts,
    merge_contacts,
    normalise_address,
    resolve_contact,
    show_contact,
)
from tickets.db import Database
from tickets.migrate import upgrade
from tickets.models import Contact, Direction, OutboxRow, Ticket, TicketMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- a store with people in it ------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[Database]:
    overrides = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgresql" else {}
    database = Database(make_settings(**overrides).effective_database_url)
    upgrade(database)
    yield database
    database.dispose()


def person(db: Database, address: str, name: str = "", kind: str = "email") -> int:
    party = Party(address=address, name=name, kind=kind)
    with db.write() as session:
        return find_or_create_contact(session, identity=party.identity, kind=kind, address=party.address,
                                      name=name).id


def ticket(db: Database, contact_id: int, subject: str, *, channel: str = "email", status: str = "new",
           messages: int = 1, at: datetime = T0) -> str:
    with db.write() as session:
        ticket_id, ref = create_ticket(session, prefix="OD", contact_id=contact_id, channel=channel,
                                       subject=subject, queue="general", status=status, received_at=at)
        for n in range(messages):
            add_message(session, ticket_id, direction=Direction.INBOUND, channel=channel, text=f"message {n}")
        if status in ("resolved", "closed"):
            column = "resolved_at" if status == "resolved" else "closed_at"
            session.execute(update(Ticket).where(Ticket.id == ticket_id).values({column: at}))
    return ref


# --- identities ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "given", "stored"), [
    ("email", " Ana.Customer@Example.COM ", "Ana.Customer@Example.COM"),
    ("phone", "+49 151 1234-5678", "+4915112345678"),
    ("phone", "0049 (151) 12345678", "+4915112345678"),
    ("phone", "+1 415 555 2671", "+14155552671"),
    ("slack", "u024be7lh", "U024BE7LH"),
    ("slack", "W0123ABCDE", "W0123ABCDE"),
])
def test_addresses_normalise_to_the_identity_routing_looks_up(kind: str, given: str, stored: str) -> None:
    assert normalise_address(kind, given) == stored
    # The same string intake's Party.identity forms: a message from this address finds the contact.
    assert identity_key(kind, stored) == Party(address=stored, kind=kind).identity


@pytest.mark.parametrize(("kind", "given", "says"), [
    ("email", "ana.example.com", "expected name@example.com"),
    ("email", "ana@localhost", "expected name@example.com"),
    ("email", "Ana <ana@example.com>", "expected name@example.com"),
    ("phone", "0151 12345678", "country code"),
    ("phone", "+1 415 555", "wrong number of digits"),
    ("phone", "+999 123", "not a phone number"),
    ("phone", "call me", "country code"),
    ("slack", "@ana", "U024BE7LH"),
    ("fax", "+4930123456", "one of email, phone, slack"),
])
def test_bad_addresses_say_what_a_good_one_looks_like(kind: str, given: str, says: str) -> None:
    with pytest.raises(ContactInvalid) as caught:
        normalise_address(kind, given)
    assert says in caught.value.message


# --- finding, listing, searching ---------------------------------------------------------------
def test_a_contact_is_found_by_id_email_phone_slack_or_kind_address(db: Database) -> None:
    ana = person(db, "Ana@Customer.test", "Ana Customer")
    with db.write() as session:
        add_identity(session, ana, "phone", "+49 151 12345678")
        add_identity(session, ana, "slack", "U024BE7LH")
    with db.read() as session:
        for key in (str(ana), ana, "ana@customer.test", "ANA@CUSTOMER.TEST", "+4915112345678",
                    "+49 (151) 1234 5678", "004915112345678", "U024BE7LH", "slack:u024be7lh",
                    "email:Ana@customer.test", "phone:+49 151 12345678"):
            assert resolve_contact(session, key) == ana, key
        found = get_contact(session, "ana@customer.test")
    assert found.name == "Ana Customer" and found.primary_address == "Ana@Customer.test"
    assert [(i.kind, i.address) for i in found.identities] == [
        ("email", "Ana@Customer.test"), ("phone", "+4915112345678"), ("slack", "U024BE7LH")]


@pytest.mark.parametrize(("key", "error", "says"), [
    ("999", ContactNotFound, "no contact 999"),
    ("nobody@customer.test", ContactNotFound, "email:nobody@customer.test"),
    ("0151 12345678", ContactInvalid, "country code"),
    ("Ana Customer", ContactInvalid, "give a contact id (12), an email address"),
    ("", ContactInvalid, "give a contact id"),
    ("99999999999999999999", ContactInvalid, "too large"),
])
def test_a_key_that_names_no_contact_says_which_forms_work(db: Database, key: str, error: type[ContactError],
                                                            says: str) -> None:
    person(db, "ana@customer.test")
    with db.read() as session, pytest.raises(error) as caught:
        resolve_contact(session, key)
    assert says in caught.value.message


def test_listing_pages_newest_first_with_a_total(db: Database) -> None:
    ids = [person(db, f"c{n}@customer.test", f"Customer {n}") for n in range(7)]
    seen: list[int] = []
    cursor = None
    with db.read() as session:
        while True:
            page = list_contacts(session, cursor=cursor, limit=3)
            assert page.total == 7
            seen += [c.id for c in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(page.items) == 1  # 3 + 3 + 1: the last page says it is the last
        with pytest.raises(ContactInvalid, match="cursor"):
            list_contacts(session, cursor="not-a-cursor")
        with pytest.raises(ContactInvalid, match="between 1 and 500"):
            list_contacts(session, limit=0)
    assert seen == sorted(ids, reverse=True)


def test_search_matches_names_and_addresses_ignoring_case(db: Database) -> None:
    ana = person(db, "ana@customer.test", "Ana Customer")
    bob = person(db, "bob@other.test", "Bob Builder")
    cy = person(db, "cy_100%@third.test", "")
    with db.write() as session:
        add_identity(session, bob, "phone", "+4915112345678")
    with db.read() as session:
        def ids(q: str) -> list[int]:
            page = list_contacts(session, q)
            assert page.total == len(page.items)
            return [c.id for c in page.items]

        assert ids("ANA") == [ana]
        assert ids("customer") == [ana]  # the name and the address both match: listed once
        assert ids("builder") == [bob]
        assert ids(".test") == [cy, bob, ana]
        assert ids("+49 151 1234") == [bob]  # a phone number however it is written
        assert ids("1511234") == [bob]
        assert ids("100%") == [cy]  # LIKE's wildcards are searched for, not used
        assert ids("_") == [cy]
        assert ids("   ") == [cy, bob, ana]
        assert ids("nobody") == []


# --- identities and merges ----------------------------------------------------------------------
def test_adding_an_identity_is_idempotent_and_a_taken_one_says_merge(db: Database) -> None:
    ana = person(db, "ana@customer.test", "Ana")
    bob = person(db, "bob@customer.test", "Bob")
    with db.write() as session:
        contact, added = add_identity(session, ana, "phone", "+49 151 12345678")
        assert added and [i.identity for i in contact.identities] == ["email:ana@customer.test",
                                                                      "phone:+4915112345678"]
        again, added = add_identity(session, ana, "phone", "+4915112345678")
        assert not added and again == contact
    with db.write() as session, pytest.raises(ContactConflict) as caught:
        add_identity(session, ana, "email", "BOB@customer.test")
    assert caught.value.code == "identity_taken"
    assert f"merge contact {bob} into {ana}" in caught.value.message
    assert caught.value.details == {"identity": "email:bob@customer.test", "contact": bob}
    with db.write() as session, pytest.raises(ContactNotFound):
        add_identity(session, 424242, "email", "new@customer.test")
    with db.read() as session:
        assert [i.identity for i in get_contact(session, bob).identities] == ["email:bob@customer.test"]


def test_merge_moves_identities_tickets_and_outbox_and_records_it(db: Database) -> None:
    ana = person(db, "ana@customer.test", "")
    bob = person(db, "bob@customer.test", "Bob Customer")
    kept = ticket(db, ana, "Ana's own")
    moved = [ticket(db, bob, "First", channel="email"), ticket(db, bob, "Second", channel="webform")]
    with db.write() as session:
        add_identity(session, bob, "phone", "+4915112345678")
        add_outbox(session, ticket_id=None, contact_id=bob, channel="email", kind="ack",
                   recipient="bob@customer.test", idempotency_key="<ack-1@example.com>", payload={})
    with db.write() as session:
        result = merge_contacts(session, bob, ana, actor="agent@example.com")
    assert (result.merged_from, result.moved_tickets, result.moved_identities) == (bob, 2, 2)
    assert result.contact.id == ana and result.contact.name == "Bob Customer"  # a name beats none
    assert [i.identity for i in result.contact.identities] == [
        "email:ana@customer.test", "email:bob@customer.test", "phone:+4915112345678"]
    assert (result.contact.tickets, result.contact.open_tickets) == (3, 3)
    with db.read() as session:
        assert session.get(Contact, bob) is None
        with pytest.raises(ContactNotFound):
            resolve_contact(session, bob)
        assert resolve_contact(session, "bob@customer.test") == ana
        tickets = {t.ref or "": t for t in session.execute(select(Ticket)).scalars()}
        assert {ref: t.contact_id for ref, t in tickets.items()} == {kept: ana, moved[0]: ana, moved[1]: ana}
        assert tickets[moved[0]].version == 2 and tickets[kept].version == 1
        events = session.execute(
            select(TicketMessage).where(TicketMessage.direction == Direction.EVENT.value)
        ).scalars().all()
        refs = {t.id: ref for ref, t in tickets.items()}
        assert sorted(refs[e.ticket_id] for e in events) == sorted(moved)
        for e in events:
            assert e.actor == "agent@example.com"
            assert e.event == {"type": "contact_merged", "from": bob, "to": ana}
            assert e.text == f"contact {bob} (Bob Customer) was merged into contact {ana} (Bob Customer)"
        assert session.execute(select(OutboxRow.contact_id)).scalar_one() == ana
        # The next message from any of Bob's addresses finds Ana's contact.
        assert find_or_create_contact(session, identity="email:bob@customer.test", kind="email",
                                      address="bob@customer.test", name="Bob").id == ana


def test_merge_refuses_itself_and_missing_contacts(db: Database) -> None:
    ana = person(db, "ana@customer.test")
    with db.write() as session, pytest.raises(ContactInvalid, match="cannot be merged into itself"):
        merge_contacts(session, ana, ana, actor="agent@example.com")
    with db.write() as session, pytest.raises(ContactNotFound, match="no contact 999"):
        merge_contacts(session, 999, ana, actor="agent@example.com")
    with db.read() as session:
        assert get_contact(session, ana).id == ana


@pytest.mark.postgres
def test_merge_waits_for_a_ticket_being_routed_to_the_source_and_moves_it(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    """A worker routing Bob's message holds his new ticket uncommitted while an agent merges Bob
    into Ana: the merge waits for it and moves it too; no ticket is left on a deleted contact."""
    db = Database(make_settings(database_url=postgres_url).effective_database_url)
    upgrade(db)
    try:
        ana, bob = person(db, "ana@customer.test", "Ana"), person(db, "bob@other.test", "Bob")
        merged = threading.Event()
        failures: list[Exception] = []

        def merge() -> None:
            try:
                with db.write() as session:
                    merge_contacts(session, bob, ana, actor="agent@example.com")
                merged.set()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                failures.append(exc)

        with db.write_connection() as routing:
            contact = find_or_create_contact(routing, identity="email:bob@other.test", kind="email",
                                             address="bob@other.test", name="Bob")
            create_ticket(routing, prefix="OD", contact_id=contact.id, channel="email", subject="In flight",
                          queue="general", received_at=T0)
            agent = threading.Thread(target=merge)
            agent.start()
            assert not merged.wait(1.0), "the merge did not wait for the ticket being routed"
        agent.join(30)
        assert not failures and merged.is_set()
        with db.read() as session:
            assert session.execute(select(Ticket.contact_id)).scalar_one() == ana
    finally:
        db.dispose()


# --- history -----------------------------------------------------------------------------------
def test_history_lists_every_channel_newest_first_with_outcomes(db: Database) -> None:
    ana = person(db, "ana@customer.test", "Ana")
    other = person(db, "zed@customer.test", "Zed")
    first = ticket(db, ana, "Old order", status="closed", messages=3, at=T0)
    second = ticket(db, ana, "Form question", channel="webform", status="resolved", at=T0 + timedelta(days=1))
    ticket(db, other, "Not Ana's")
    third = ticket(db, ana, "Chat", channel="whatsapp", status="pending", messages=2, at=T0 + timedelta(days=2))
    with db.write() as session:
        ids = {ref: tid for ref, tid in session.execute(select(Ticket.ref, Ticket.id))}
        session.execute(update(Ticket).where(Ticket.id == ids[first]).values(merged_into_id=ids[third]))
        add_message(session, ids[third], direction=Direction.EVENT, channel="whatsapp", text="status changed",
                    actor="agent@example.com", event={"type": "status", "from": "open", "to": "pending"})
    with db.read() as session:
        history = contact_history(session, ana)
        assert history.total == 3 and history.next_cursor is None
        assert [(h.ref, h.channel, h.status, h.outcome, h.merged_into, h.message_count) for h in history.items] == [
            (third, "whatsapp", "pending", "in_progress", None, 2),  # the event is no message
            (second, "webform", "resolved", "resolved", None, 1),
            (first, "email", "closed", "merged", third, 3),
        ]
        assert history.items[1].resolved_at == T0 + timedelta(days=1) and history.items[1].closed_at is None
        assert history.items[2].closed_at == T0 and history.items[2].received_at == T0
        page = contact_history(session, ana, limit=2)
        rest = contact_history(session, ana, cursor=page.next_cursor, limit=2)
        assert [h.ref for h in page.items + rest.items] == [third, second, first] and rest.next_cursor is None
        detail = show_contact(session, "ana@customer.test", history_limit=1)
        assert detail.history.total == 3 and [h.ref for h in detail.history.items] == [third]
        assert (detail.tickets, detail.open_tickets) == (3, 1)
        assert contact_history(session, other).total == 1
        with pytest.raises(ContactNotFound):
            contact_history(session, 4242)


# --- the agent API, on a running desk ---------------------------------------------------------------
@pytest.fixture
def desk(make_settings: Callable[..., Settings], smtp_sink: SmtpSink) -> Iterator[AgentDesk]:
    with running_desk(make_settings(outbound_smtp_url=smtp_sink.url, form_rate_limit_per_minute=0)) as running:
        yield running


def _form(desk: AgentDesk, email: str, subject: str) -> None:
    response = httpx.post(desk.base_url + "/intake/form", timeout=30, json={
        "name": "Ana Customer", "email": email, "subject": subject, "message": "Where is my parcel?"})
    assert response.status_code == 202, response.text


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["request_id"]
    return str(error["message"])


def test_agents_search_see_history_add_identities_and_merge_over_http(desk: AgentDesk) -> None:
    token = desk.agent("Dee Agent", "dee@example.com")
    desk.send(make_mail(sender="Ana Customer <ana@customer.test>", subject="Order 1 never arrived"))
    desk.wait_routed()
    _form(desk, "ana@customer.test", "Parcel question")
    desk.send(make_mail(sender="Bob Customer <bob@other.test>", subject="Refund please"))
    desk.wait_routed()
    with desk.client() as anonymous:
        _error(anonymous.get("/api/contacts"), 401, "unauthorized")
        _error(anonymous.get("/api/contacts/ana@customer.test"), 401, "unauthorized")
    with desk.client(token) as http:
        listed = http.get("/api/contacts", params={"q": "CUSTOMER.test"}).json()
        assert [c["primary_address"] for c in listed["items"]] == ["ana@customer.test"]
        assert listed["total"] == 1 and listed["next_cursor"] is None
        first = http.get("/api/contacts", params={"limit": 1}).json()
        assert first["total"] == 2 and first["next_cursor"]
        second = http.get("/api/contacts", params={"limit": 1, "cursor": first["next_cursor"]}).json()
        assert [c["primary_address"] for c in first["items"] + second["items"]] == [
            "bob@other.test", "ana@customer.test"]
        assert "cursor" in _error(http.get("/api/contacts", params={"cursor": "xyz"}), 422, "invalid_cursor")
        _error(http.get("/api/contacts", params={"limit": 0}), 422, "invalid")

        ana = http.get("/api/contacts/ana@customer.test").json()
        assert ana["name"] == "Ana Customer" and (ana["tickets"], ana["open_tickets"]) == (2, 2)
        history = ana["history"]["items"]
        assert [(h["channel"], h["subject"]) for h in history] == [
            ("webform", "Parcel question"), ("email", "Order 1 never arrived")]
        assert all(h["status"] == "new" and h["outcome"] == "in_progress" and h["message_count"] >= 1
                   for h in history)
        assert http.get(f"/api/contacts/{ana['id']}/history").json()["items"] == history
        assert "no contact with the identity email:x@y.test" in _error(
            http.get("/api/contacts/x@y.test"), 404, "contact_not_found")
        assert "country code" in _error(http.get("/api/contacts/0151%2012345678"), 422, "invalid_phone")

        added = http.post(f"/api/contacts/{ana['id']}/identities", json={"kind": "phone",
                                                                          "address": "+49 151 12345678"})
        assert added.status_code == 201, added.text
        assert [i["identity"] for i in added.json()["identities"]] == [
            "email:ana@customer.test", "phone:+4915112345678"]
        again = http.post("/api/contacts/ana@customer.test/identities", json={"kind": "phone",
                                                                               "address": "+4915112345678"})
        assert again.status_code == 200 and again.json() == added.json()
        bob = http.get("/api/contacts/bob@other.test").json()
        taken = _error(http.post(f"/api/contacts/{ana['id']}/identities",
                                 json={"kind": "email", "address": "bob@other.test"}), 409, "identity_taken")
        assert f"merge contact {bob['id']} into {ana['id']}" in taken
        assert "+1 415 555" in _error(http.post("/api/contacts/ana@customer.test/identities",
                                                    json={"kind": "phone", "address": "+1 415 555"}),
                                          422, "invalid_phone")
        _error(http.post("/api/contacts/ana@customer.test/identities",
                         json={"kind": "phone", "address": "+4915112345678", "primary": True}), 422, "invalid")
        _error(http.post("/api/contacts/ana@customer.test/identities", json={"kind": "fax", "address": "1"}),
               422, "invalid")
        _error(http.post("/api/contacts/ana@customer.test/merge", json={"into": "ana@customer.test"}),
               422, "merge_into_itself")

        # Bob is Ana (a second address): merge him into her, naming her by her phone number.
        merged = http.post("/api/contacts/bob@other.test/merge", json={"into": "+4915112345678"})
        assert merged.status_code == 200, merged.text
        body = merged.json()
        assert (body["merged_from"], body["moved_tickets"], body["moved_identities"]) == (bob["id"], 1, 1)
        _error(http.get(f"/api/contacts/{bob['id']}"), 404, "contact_not_found")
        by_phone = http.get("/api/contacts/" + quote("+4915112345678", safe="")).json()
        assert by_phone["id"] == ana["id"] and by_phone["history"]["total"] == 3
        assert http.get("/api/contacts/+4915112345678").json()["id"] == ana["id"]  # "+" as is, too
        refund = by_phone["history"]["items"][0]
        assert refund["subject"] == "Refund please"
        events = [m for m in desk.ticket(refund["ref"])["messages"] if m["direction"] == "event"]
        assert len(events) == 1 and "was merged into contact" in events[0]["text"]
        with desk.app.db.read() as session:
            recorded = session.execute(
                select(TicketMessage.actor, TicketMessage.event).where(TicketMessage.direction == "event")
            ).one()
        assert tuple(recorded) == ("dee@example.com", {"type": "contact_merged", "from": bob["id"], "to": ana["id"]})

        # Bob writes again, from his own address: the new ticket is Ana's.
        desk.send(make_mail(sender="Bob Customer <bob@other.test>", subject="Also, my invoice"))
        desk.wait_routed()
        latest = http.get(f"/api/contacts/{ana['id']}/history", params={"limit": 1}).json()
        assert latest["total"] == 4 and latest["items"][0]["subject"] == "Also, my invoice"
        assert http.get("/api/contacts").json()["total"] == 1


def test_openapi_describes_every_contacts_route_and_its_errors(desk: AgentDesk) -> None:
    spec = httpx.get(desk.base_url + "/openapi.json", timeout=30).json()
    paths = spec["paths"]
    expected = {
        ("/api/contacts", "get"): {"200", "401", "422"},
        ("/api/contacts/{contact}", "get"): {"200", "401", "404", "422"},
        ("/api/contacts/{contact}/history", "get"): {"200", "401", "404", "422"},
        ("/api/contacts/{contact}/identities", "post"): {"200", "201", "401", "404", "409", "422"},
        ("/api/contacts/{contact}/merge", "post"): {"200", "401", "404", "422"},
    }
    for (path, method), statuses in expected.items():
        responses = paths[path][method]["responses"]
        assert set(responses) == statuses, (path, method)
        for status in statuses - {"200", "201"}:
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    schemas = spec["components"]["schemas"]
    assert schemas["IdentityIn"]["additionalProperties"] is False
    assert schemas["ContactMergeIn"]["additionalProperties"] is False
    assert {"items", "next_cursor", "total"} <= set(schemas["ContactPage"]["properties"])
    assert "history" in schemas["ContactDetail"]["properties"]


# --- the command line -------------------------------------------------------------------------------
@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           make_settings: Callable[..., Settings]) -> Iterator[Database]:
    data_dir = tmp_path / "cli-var"
    monkeypatch.setenv("OMNIDESK_DATA_DIR", str(data_dir))
    database = Database(make_settings(data_dir=data_dir).effective_database_url)
    upgrade(database)
    yield database
    database.dispose()


def omnidesk(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["contacts", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_shows_a_contact_by_email_id_or_phone(cli_db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    ana = person(cli_db, "ana@customer.test", "Ana Customer")
    with cli_db.write() as session:
        add_identity(session, ana, "phone", "+4915112345678")
    old = ticket(cli_db, ana, "Old order", status="closed", messages=2)
    new = ticket(cli_db, ana, "Form question", channel="webform")
    for key in ("ana@customer.test", str(ana), "+49 151 12345678"):
        status, out, err = omnidesk(capsys, "show", key)
        assert status == 0 and err == "", key
        lines = out.splitlines()
        assert lines[0].startswith(f"contact {ana}  Ana Customer  since ")
        assert "2 tickets, 1 open" in lines[0]
        assert lines[1].split() == ["email", "ana@customer.test"] and lines[2].split() == ["phone", "+4915112345678"]
        rows = [line.split()[0] for line in lines if line.startswith("OD-")]
        assert rows == [new, old]  # newest first
    status, out, _ = omnidesk(capsys, "show", "ana@customer.test", "--json")
    shown = json.loads(out)
    assert status == 0 and shown["id"] == ana and [h["ref"] for h in shown["history"]["items"]] == [new, old]
    status, out, err = omnidesk(capsys, "show", "ana@customer.test", "--limit", "1", "--json")
    assert len(json.loads(out)["history"]["items"]) == 1
    assert err.strip() == "showing 1 of 2 tickets; use --limit to see more"
    status, _, err = omnidesk(capsys, "show", "nobody@customer.test")
    assert status == 1 and "no contact with the identity email:nobody@customer.test" in err
    status, _, err = omnidesk(capsys, "show", "0151 12345678")
    assert status == 2 and "country code" in err


def test_cli_lists_merges_and_adds_identities(cli_db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    ana = person(cli_db, "ana@customer.test", "Ana Customer")
    bob = person(cli_db, "bob@other.test", "Bob")
    ticket(cli_db, bob, "Refund please")
    status, out, err = omnidesk(capsys, "list", "--limit", "1", "--json")
    assert status == 0 and [c["id"] for c in json.loads(out)] == [bob]
    assert err.strip() == "showing 1 of 2 contacts; use --limit to see more"
    status, out, err = omnidesk(capsys, "list", "--search", "customer")
    assert status == 0 and err == "" and "ana@customer.test" in out and "bob@" not in out

    status, out, _ = omnidesk(capsys, "add-identity", "ana@customer.test", "phone", "+1 415 555 2671")
    assert status == 0 and out.startswith("added phone +1 415 555 2671") and "+14155552671" in out
    status, _, err = omnidesk(capsys, "add-identity", str(ana), "email", "bob@other.test")
    assert status == 2 and f"omnidesk contacts merge {bob} {ana}" in err

    status, _, err = omnidesk(capsys, "merge", "bob@other.test", str(ana), "--actor", "ghost@example.com")
    assert status == 2 and "no agent ghost@example.com" in err
    status, out, _ = omnidesk(capsys, "merge", "bob@other.test", "+14155552671", "--json")
    result = json.loads(out)
    assert status == 0 and result["merged_from"] == bob and result["moved_tickets"] == 1
    assert [i["address"] for i in result["contact"]["identities"]] == [
        "ana@customer.test", "+14155552671", "bob@other.test"]  # Ana's own first: her primary stays
    with cli_db.read() as session:
        actor = session.execute(select(TicketMessage.actor).where(TicketMessage.direction == "event")).scalar_one()
    assert actor == "system"
    status, out, _ = omnidesk(capsys, "list")
    assert status == 0 and out.count("\n") == 2  # the header and Ana


def test_cli_asks_for_a_migrated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OMNIDESK_DATA_DIR", str(tmp_path / "empty"))
    status, _, err = omnidesk(capsys, "list")
    assert status == 2 and "omnidesk db upgrade" in err

