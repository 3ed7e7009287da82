"""Agents work a case from the first message to its resolution, through a real HTTP server.

The seed's damaged-order scenario end to end (web form, the logistics agent's internal note, the
support agent's reply arriving by email, the customer's email follow-up on the same ticket,
resolution, the timeline showing each step with who did it), and the rules of the lifecycle:
versions, closed tickets, merges, links, customer reopens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.agent_desk import AgentDesk, running_desk
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import make_mail

NOTE_TEXT = "Approved a replacement from the Leeds warehouse; the courier damaged it (claim 77-A)."


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request: pytest.FixtureRequest, make_settings: Callable[..., Any], smtp_sink: SmtpSink) -> Iterator[AgentDesk]:
    overrides: dict[str, Any] = {"outbound_smtp_url": smtp_sink.url, "sweep_interval_seconds": 0.5}
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    with running_desk(make_settings(**overrides)) as desk:
        yield desk


def submit_form(desk: AgentDesk, *, subject: str, message: str, email: str = "maya@customer.test") -> str:
    response = httpx.post(desk.base_url + "/intake/form", timeout=30, json={
        "submission_id": uuid.uuid4().hex, "name": "Maya Customer", "email": email,
        "subject": subject, "message": message,
    })
    assert response.status_code == 202, response.text
    desk.wait_routed()
    refs = [t["ref"] for t in desk.tickets() if t["subject"] == subject]
    assert len(refs) == 1
    return refs[0]


def plain_text(mail: Any) -> str:
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None, "no text/plain part"
    return str(body.get_content())


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def etag(response: httpx.Response) -> str:
    return response.headers["ETag"]


def test_the_damaged_order_case_end_to_end(desk: AgentDesk, smtp_sink: SmtpSink) -> None:
    support = desk.client(desk.agent("Sam Support", "sam@example.com", teams=("general",)))
    logistics = desk.client(desk.agent("Carla Logistics", "carla@example.com", teams=("logistics",)))

    # 1. The customer reports a damaged order on the web form and is acknowledged by email.
    ref = submit_form(desk, subject="Order 5521 arrived damaged",
                      message="The box was crushed and the lamp inside is broken. Order 5521.")
    (ack,) = smtp_sink.wait_for(1)
    assert ack.rcpt_tos == ("maya@customer.test",) and ref in ack.message["Subject"]

    # 2. The rules sent it to logistics; support takes it on, and asks logistics about a replacement.
    ticket = support.get(f"/api/tickets/{ref}")
    assert ticket.status_code == 200, ticket.text
    assert ticket.json()["status"] == "new" and ticket.json()["queue"] == "logistics"
    taken = support.patch(f"/api/tickets/{ref}", headers={"If-Match": etag(ticket)},
                          json={"assignee": "sam@example.com", "add_tags": ["replacement"]})
    assert taken.status_code == 200, taken.text
    assert taken.json()["status"] == "open" and taken.json()["assignee"] == "sam@example.com"
    asked = support.post(f"/api/tickets/{ref}/notes", json={"text": "Can we send a replacement?",
                                                             "notify": ["carla@example.com"]})
    assert asked.status_code == 201, asked.text

    # 3. Logistics approves the replacement in an internal note, telling the support agent.
    noted = logistics.post(f"/api/tickets/{ref}/notes", json={"text": NOTE_TEXT, "notify": ["sam@example.com"]})
    assert noted.status_code == 201, noted.text

    # 4. Support answers the customer: the reply goes out by email (a form ticket's channel).
    replied = support.post(f"/api/tickets/{ref}/replies", json={
        "text": "We are sorry! A replacement lamp ships tomorrow; no need to return the broken one."})
    assert replied.status_code == 201, replied.text
    assert replied.json()["channel"] == "email" and replied.json()["status"] == "pending"
    mails = smtp_sink.wait_for(4)  # ack, the two notes' notifications (Carla, Sam), the reply
    to_customer = [m for m in mails if "maya@customer.test" in m.rcpt_tos]
    to_sam = [m for m in mails if "sam@example.com" in m.rcpt_tos]
    assert len(to_customer) == 2 and len(to_sam) == 1
    reply_mail = to_customer[-1].message
    assert "replacement lamp ships tomorrow" in plain_text(reply_mail)
    assert reply_mail["Message-ID"] == replied.json()["message_id"]
    assert NOTE_TEXT in plain_text(to_sam[0].message)
    # Notes never leave the building: nothing the customer got mentions it.
    assert all(NOTE_TEXT not in m.raw.decode("utf-8", "replace") for m in to_customer)

    # 5. The customer answers the reply by email: it lands on the same ticket and reopens it.
    desk.send(make_mail(sender="Maya Customer <maya@customer.test>", subject="Re: " + reply_mail["Subject"],
                        body="Thank you, that is great. I will watch out for it.",
                        in_reply_to=reply_mail["Message-ID"], references=[reply_mail["Message-ID"]]))
    desk.wait_routed()
    assert len(desk.tickets()) == 1
    reopened = support.get(f"/api/tickets/{ref}").json()
    assert reopened["status"] == "open"

    # 6. Support resolves it.
    resolved = support.patch(f"/api/tickets/{ref}", json={"status": "resolved", "reason": "replacement shipped"})
    assert resolved.status_code == 200, resolved.text
    timeline = resolved.json()["messages"]
    steps = [(m["direction"], m["actor"], (m["event"] or {}).get("type"), _hashable((m["event"] or {}).get("to")))
             for m in timeline]
    assert steps[0][0] == "inbound" and timeline[0]["channel"] == "webform"
    assert ("event", "sam@example.com", "status", "open") in steps  # the first agent action
    assert ("event", "sam@example.com", "assignee", "sam@example.com") in steps
    assert ("note", "sam@example.com", None, None) in steps
    assert ("note", "carla@example.com", None, None) in steps
    assert ("outbound", "sam@example.com", None, None) in steps
    assert ("event", "customer", "status", "open") in steps  # pending -> open: the customer answered
    assert steps[-1] == ("event", "sam@example.com", "status", "resolved")
    inbound = [m for m in timeline if m["direction"] == "inbound"]
    assert [m["channel"] for m in inbound] == ["webform", "email"]
    order = [i for i, s in enumerate(steps) if s in {
        ("event", "sam@example.com", "status", "open"), ("note", "carla@example.com", None, None),
        ("outbound", "sam@example.com", None, None), ("event", "customer", "status", "open")}]
    assert order == sorted(order) and len(order) == 4
    support.close()
    logistics.close()


def test_concurrent_edits_do_not_lose_updates(desk: AgentDesk) -> None:
    token = desk.agent("Sam Support", "sam@example.com")
    ref = submit_form(desk, subject="Two agents at once", message="Which one wins?")
    with desk.client(token) as api:
        read = api.get(f"/api/tickets/{ref}")
        first = api.patch(f"/api/tickets/{ref}", json={"priority": "high"}, headers={"If-Match": etag(read)})
        assert first.status_code == 200
        stale = api.patch(f"/api/tickets/{ref}", json={"priority": "low"}, headers={"If-Match": etag(read)})
        assert stale.status_code == 412, stale.text
        error = stale.json()["error"]
        assert error["code"] == "version_mismatch" and error["request_id"] == stale.headers["X-Request-ID"]
        assert api.get(f"/api/tickets/{ref}").json()["priority"] == "high"
        # Tag additions from two agents need no version: neither is lost.
        api.patch(f"/api/tickets/{ref}", json={"add_tags": ["damaged"]})
        api.patch(f"/api/tickets/{ref}", json={"add_tags": ["courier"]})
        assert set(api.get(f"/api/tickets/{ref}").json()["tags"]) >= {"damaged", "courier"}


def test_closed_is_final_and_a_customer_message_opens_a_linked_ticket(desk: AgentDesk, smtp_sink: SmtpSink) -> None:
    token = desk.agent("Sam Support", "sam@example.com")
    ref = submit_form(desk, subject="Invoice copy", message="Please send a copy of invoice 42.")
    with desk.client(token) as api:
        sent = api.post(f"/api/tickets/{ref}/replies", json={"text": "Attached.", "status": "closed"})
        assert sent.status_code == 201, sent.text
        again = api.patch(f"/api/tickets/{ref}", json={"status": "open"})
        assert again.status_code == 409 and "closed" in again.json()["error"]["message"]
        reply_id = sent.json()["message_id"]
        desk.send(make_mail(sender="maya@customer.test", subject="Re: Invoice copy", body="And invoice 43?",
                            in_reply_to=reply_id, references=[reply_id]))
        desk.wait_routed()
        tickets = desk.tickets()
        assert len(tickets) == 2
        new_ref = next(t["ref"] for t in tickets if t["ref"] != ref)
        new = api.get(f"/api/tickets/{new_ref}").json()
        assert new["status"] == "new"
        assert [(link["ref"], link["kind"]) for link in new["links"]] == [(ref, "follow_up")]
        assert api.get(f"/api/tickets/{ref}").json()["status"] == "closed"


def test_a_customer_reply_reopens_a_resolved_ticket_and_counts(desk: AgentDesk, smtp_sink: SmtpSink) -> None:
    token = desk.agent("Sam Support", "sam@example.com")
    ref = submit_form(desk, subject="Wrong size", message="The shoes are too small.")
    with desk.client(token) as api:
        sent = api.post(f"/api/tickets/{ref}/replies", json={"text": "Exchange sent.", "status": "resolved"})
        assert sent.json()["status"] == "resolved"
        reply_id = sent.json()["message_id"]
        desk.send(make_mail(sender="maya@customer.test", subject="Re: Wrong size", body="Still too small!",
                            in_reply_to=reply_id, references=[reply_id]))
        desk.wait_routed()
        ticket = api.get(f"/api/tickets/{ref}").json()
        # The packaged rules escalate a ticket its customer reopens ("Reopen escalation").
        assert ticket["status"] == "escalated" and ticket["priority"] == "high"
        assert ticket["reopened_count"] == 1 and ticket["resolved_at"] is None
        (event,) = [m for m in ticket["messages"] if (m["event"] or {}).get("from") == "resolved"]
        assert event["actor"] == "rules" and "Reopen escalation" in event["text"]


def test_merge_joins_timelines_and_later_mail_lands_on_the_target(desk: AgentDesk, smtp_sink: SmtpSink) -> None:
    token = desk.agent("Sam Support", "sam@example.com")
    first = submit_form(desk, subject="Where is order 9?", message="It is late.", email="maya@customer.test")
    second = submit_form(desk, subject="Order 9 again", message="Still nothing.", email="maya.work@customer.test")
    with desk.client(token) as api:
        merged = api.post(f"/api/tickets/{second}/merge", json={"into": first})
        assert merged.status_code == 200, merged.text
        body = merged.json()
        assert body["ref"] == first
        assert [m["text"] for m in body["messages"] if m["direction"] == "inbound"] == ["It is late.", "Still nothing."]
        old = api.get(f"/api/tickets/{second}").json()
        assert old["status"] == "closed" and old["merged_into"] == first
        assert api.patch(f"/api/tickets/{second}", json={"priority": "high"}).status_code == 409
        # A message naming the old reference lands on the ticket it was merged into.
        desk.send(make_mail(sender="maya.work@customer.test", subject=f"[{second}] any news?", body="Hello?"))
        desk.wait_routed()
        assert len(desk.tickets()) == 2
        inbound = [m for m in api.get(f"/api/tickets/{first}").json()["messages"] if m["direction"] == "inbound"]
        assert inbound[-1]["text"].startswith("Hello?")
        linked = api.post(f"/api/tickets/{first}/links", json={"ticket": first})
        assert linked.status_code == 422


def test_errors_are_json_with_a_code_and_the_request_id(desk: AgentDesk) -> None:
    token = desk.agent("Sam Support", "sam@example.com")
    with desk.client(token) as api:
        missing = api.get("/api/tickets/OD-999999")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert missing.json()["error"]["request_id"] == missing.headers["X-Request-ID"]
        bad = api.patch("/api/tickets/OD-1", json={"priority": "sky-high"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid"
        unknown_field = api.patch("/api/tickets/OD-1", json={"colour": "red"})
        assert unknown_field.status_code == 422
        traced = api.get("/api/tickets", headers={"X-Request-ID": "trace-123"})
        assert traced.headers["X-Request-ID"] == "trace-123"
    with desk.client() as anonymous:
        assert anonymous.get("/api/tickets").status_code == 401


@pytest.mark.parametrize("policy", ["new_ticket", "reopen"])
def test_resolved_tickets_close_on_time_and_the_closed_reply_setting(
        policy: str, make_settings: Callable[..., Any], smtp_sink: SmtpSink) -> None:
    settings = make_settings(outbound_smtp_url=smtp_sink.url, resolved_close_after_hours=0,
                             closed_ticket_reply=policy)
    with running_desk(settings) as desk:
        token = desk.agent("Sam Support", "sam@example.com")
        ref = submit_form(desk, subject="Password reset", message="I cannot log in.")
        with desk.client(token) as api:
            sent = api.post(f"/api/tickets/{ref}/replies", json={"text": "Link sent.", "status": "resolved"})
            assert sent.status_code == 201
            assert desk.app.close_resolved() == [ref]
            closed = api.get(f"/api/tickets/{ref}").json()
            assert closed["status"] == "closed" and closed["closed_at"]
            assert closed["messages"][-1]["actor"] == "system"
            assert desk.app.close_resolved() == []
            reply_id = sent.json()["message_id"]
            desk.send(make_mail(sender="maya@customer.test", subject="Re: Password reset", body="Worked, thanks",
                                in_reply_to=reply_id, references=[reply_id]))
            desk.wait_routed()
            after = api.get(f"/api/tickets/{ref}").json()
        if policy == "reopen":
            assert len(desk.tickets()) == 1 and after["status"] == "open" and after["reopened_count"] == 1
        else:
            assert len(desk.tickets()) == 2 and after["status"] == "closed"


def test_status_changed_rules_act_on_an_agents_transition(make_settings: Callable[..., Any], smtp_sink: SmtpSink,
                                                           tmp_path: Any) -> None:
    from pathlib import Path

    import config

    packaged = (Path(config.__file__).parent / "routing.yaml").read_text()
    rules = tmp_path / "routing.yaml"
    rules.write_text(packaged + (
        "  - name: Escalations page the lead\n"
        "    on: status_changed\n"
        "    when: {ticket.status: escalated, ticket.previous_status: [new, open, pending]}\n"
        "    then: {priority: urgent, tags: [lead-paged], notify: [lead@example.com]}\n"))
    settings = make_settings(outbound_smtp_url=smtp_sink.url, rules_file=rules)
    with running_desk(settings) as desk:
        token = desk.agent("Sam Support", "sam@example.com")
        ref = submit_form(desk, subject="Site down", message="Checkout fails with error 500.")
        with desk.client(token) as api:
            done = api.post(f"/api/tickets/{ref}/escalate", json={"queue": "technical", "reason": "outage"})
            assert done.status_code == 200, done.text
            ticket = done.json()
        assert ticket["priority"] == "urgent" and "lead-paged" in ticket["tags"]
        assert ticket["messages"][-1]["actor"] == "rules"
        mails = smtp_sink.wait_for(2)
        assert any("lead@example.com" in m.rcpt_tos and "escalated" in m.message["Subject"] for m in mails)


def test_a_reply_carries_attachments_and_refuses_a_channel_that_cannot_reach_the_contact(
        desk: AgentDesk, smtp_sink: SmtpSink) -> None:
    import base64

    token = desk.agent("Sam Support", "sam@example.com")
    ref = submit_form(desk, subject="Need the manual", message="Where is the PDF manual?")
    smtp_sink.wait_for(1)
    pdf = b"%PDF-1.4 a tiny manual\n%%EOF\n"
    with desk.client(token) as api:
        nowhere = api.post(f"/api/tickets/{ref}/replies", json={"text": "Here", "channel": "carrier-pigeon"})
        assert nowhere.status_code == 422 and nowhere.json()["error"]["code"] == "unknown_channel"
        broken = api.post(f"/api/tickets/{ref}/replies", json={"text": "Here", "attachments": [
            {"filename": "manual.pdf", "content_type": "application/pdf", "content_base64": "not base64!"}]})
        assert broken.status_code == 422 and broken.json()["error"]["code"] == "bad_attachment"
        sent = api.post(f"/api/tickets/{ref}/replies", json={"text": "The manual is attached.", "channel": "email",
                                                             "attachments": [{
                                                                 "filename": "manual.pdf",
                                                                 "content_type": "application/pdf",
                                                                 "content_base64": base64.b64encode(pdf).decode()}]})
        assert sent.status_code == 201, sent.text
    mail = smtp_sink.wait_for(2)[-1].message
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "manual.pdf" and attachment.get_content() == pdf


def test_the_ticket_list_filters_and_pages_over_http(desk: AgentDesk) -> None:
    token = desk.agent("Sam Support", "sam@example.com")
    refs = [submit_form(desk, subject=f"Question {n}", message=f"Question number {n}") for n in range(5)]
    with desk.client(token) as api:
        api.patch(f"/api/tickets/{refs[1]}", json={"status": "pending", "assignee": "sam@example.com"})
        api.patch(f"/api/tickets/{refs[3]}", json={"priority": "urgent", "add_tags": ["vip"]})
        seen: list[str] = []
        cursor = None
        while True:
            page = api.get("/api/tickets", params={"limit": 2, "order": "created", **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            seen += [t["ref"] for t in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(refs))
        only = lambda **params: [t["ref"] for t in api.get("/api/tickets", params=params).json()["items"]]  # noqa: E731
        assert only(status="pending") == [refs[1]]
        assert only(assignee="sam@example.com") == [refs[1]]
        assert refs[1] not in only(assignee="unassigned")
        assert only(priority="urgent") == only(tag="vip") == [refs[3]]
        assert only(q="question 4") == [refs[4]]
        bad = api.get("/api/tickets", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_cursor"
        naive = api.get("/api/tickets", params={"created_from": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
