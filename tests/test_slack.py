"""Slack end to end: signed Events API deliveries in, answers and queue channel posts out.

The web process serves ``/intake/slack/events``; the Slack Web API is ``tests.peers.slack_api``
(its wire format) with the real slack_sdk client pointed at it; bodies are signed as Slack signs
them. Workers route and send as in production.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Settings
from tests.peers.slack_api import BOT_ID, BOT_USER, TOKEN, SlackApi, sign
from tests.pipeline import Pipeline

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SUPPORT = "C0SUPPORT1"
TEAM = "C0TEAMGEN1"
CUSTOMER = "U0CUST0001"
AGENT = "U0AGENT001"
STRANGER = "U0STRANGE1"


def event(text: str, *, channel: str = SUPPORT, user: str = CUSTOMER, ts: str | None = None,
          thread_ts: str | None = None, event_id: str | None = None, channel_type: str = "channel",
          **extra: Any) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": "message", "channel": channel, "user": user, "text": text,
                             "ts": ts or f"{time.time():.6f}", "channel_type": channel_type, **extra}
    if thread_ts:
        inner["thread_ts"] = thread_ts
    return {"token": "x", "team_id": "T0TEST", "api_app_id": "A0TEST", "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
            "event": inner, "authorizations": [{"team_id": "T0TEST", "user_id": BOT_USER, "is_bot": True}]}


def channels_yaml(path: Path, extra: str = "") -> Path:
    path.write_text(
        "slack:\n"
        "  support_channels:\n"
        f"    - id: {SUPPORT}\n"
        "      queue: general\n"
        "  queue_channels:\n"
        f"    general: {TEAM}\n" + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def slack_api() -> Iterator[SlackApi]:
    api = SlackApi(users={CUSTOMER: {"name": "Ana Customer", "email": "ana@customer.test"},
                          AGENT: {"name": "Bo Agent", "email": "bo@example.com"},
                          STRANGER: {"name": "Who Knows", "email": "who@elsewhere.test"}}).start()
    yield api
    api.stop()


@pytest.fixture
def slack_settings(make_settings: Callable[..., Settings], slack_api: SlackApi, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "channels_file": channels_yaml(tmp_path / "channels.yaml"),
            "slack_signing_secret": SECRET, "slack_bot_token": TOKEN, "slack_api_base": slack_api.base,
            "slack_min_post_interval_seconds": 0.0,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
def desk(slack_settings: Callable[..., Settings]) -> Iterator[Pipeline]:
    p = Pipeline(slack_settings()).start(("worker", "sweeper", "web"))
    yield p
    p.stop()


def deliver(p: Pipeline, body: dict[str, Any] | bytes, *, secret: str = SECRET, timestamp: int | None = None,
            retry: int = 0, path: str = "/intake/slack/events") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = sign(secret, raw, timestamp)
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    url = f"http://{p.settings.http_host}:{p.settings.http_port}{path}"
    return httpx.post(url, content=raw, headers=headers, timeout=30)


# --- the Events API endpoint ----------------------------------------------------------------------
def test_url_verification_is_answered_with_the_challenge(desk: Pipeline) -> None:
    answer = deliver(desk, {"type": "url_verification", "token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV"})
    assert answer.status_code == 200 and answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}


@pytest.mark.parametrize("problem", ["bad", "stale", "unsigned"])
def test_forged_stale_or_unsigned_requests_are_refused_and_change_nothing(desk: Pipeline, problem: str) -> None:
    body = json.dumps(event("Hello, my invoice is wrong")).encode()
    url = f"http://{desk.settings.http_host}:{desk.settings.http_port}/intake/slack/events"
    if problem == "bad":
        headers = sign("not-the-secret", body)
    elif problem == "stale":
        headers = sign(SECRET, body, int(time.time()) - 301)
    else:
        headers = {"Content-Type": "application/json"}
    answer = httpx.post(url, content=body, headers=headers, timeout=30)
    assert answer.status_code == 401
    assert answer.json()["message"]
    time.sleep(0.5)
    assert desk.tickets() == []


def test_a_message_becomes_a_ticket_and_retries_change_nothing(desk: Pipeline, slack_api: SlackApi) -> None:
    body = event("Hello, my invoice is wrong", ts="1700000001.000100")
    first = deliver(desk, body)
    assert first.status_code == 200, first.text
    for attempt in (1, 2, 3):  # Slack's retry pattern: same event_id, X-Slack-Retry-Num
        again = deliver(desk, body, retry=attempt)
        assert again.status_code == 200 and again.json()["duplicate"] is True
    desk.wait_routed()
    (ticket,) = desk.tickets()
    # users.info gave the customer's email: their contact is the one their emails have.
    assert ticket["channel"] == "slack" and ticket["contact"] == "ana@customer.test"
    shown = desk.ticket(ticket["ref"])
    assert len([m for m in shown["messages"] if m["direction"] == "inbound"]) == 1
    # The acknowledgement goes into the customer's thread, once.
    (ack,) = slack_api.wait_posts(1, channel=SUPPORT)
    assert ack.args["thread_ts"] == "1700000001.000100"
    assert ticket["ref"] in ack.args["text"]
    assert ack.args["metadata"]["event_payload"]["ticket"] == ticket["ref"]


def test_thread_replies_continue_the_ticket_and_a_new_message_opens_another(
    desk: Pipeline, slack_api: SlackApi
) -> None:
    assert deliver(desk, event("First problem", ts="1700000002.000100")).status_code == 200
    desk.wait_for_messages(1)
    assert deliver(desk, event("More detail", ts="1700000002.000200", thread_ts="1700000002.000100")).status_code == 200
    desk.wait_for_messages(3)  # inbound, ack, inbound
    (ticket,) = desk.tickets()
    inbound = [m for m in desk.ticket(ticket["ref"])["messages"] if m["direction"] == "inbound"]
    assert [m["text"] for m in inbound] == ["First problem", "More detail"]
    assert inbound[1]["decision"]["thread"]["via"] == "thread_ts"
    assert deliver(desk, event("Another topic", ts="1700000003.000100")).status_code == 200
    desk.wait_until(lambda: len(desk.tickets()) == 2, what="a second ticket")


def test_dms_to_the_app_are_tickets_and_bots_and_other_channels_are_ignored(
    desk: Pipeline, slack_api: SlackApi
) -> None:
    ignored = [
        event("I am our own bot", user=BOT_USER, bot_id=BOT_ID),
        event("another app", user="U0OTHERAPP", bot_id="B0OTHER01"),
        event("classic bot", subtype="bot_message", user="", bot_id="B0OTHER02"),
        event("somewhere else", channel="C0RANDOM01"),
        event("joined", subtype="channel_join"),
        event("a top-level chat in the team channel", channel=TEAM),
    ]
    for body in ignored:
        answer = deliver(desk, body)
        assert answer.status_code == 200 and "ignored" in answer.json(), body
    assert deliver(desk, event("Hi app, help please", channel="D0DIRECT01", channel_type="im")).status_code == 200
    desk.wait_routed()
    (ticket,) = desk.tickets()
    assert ticket["subject"] == "Hi app, help please"
    (ack,) = slack_api.wait_posts(1, channel="D0DIRECT01")
    assert ack.args["thread_ts"]


def test_a_signed_body_that_is_not_json_is_quarantined(desk: Pipeline) -> None:
    from tickets.queries import list_quarantine

    assert deliver(desk, b"{not json").status_code == 200
    with desk.app.db.read() as session:
        (row,) = list_quarantine(session)
    assert "not JSON" in row["reason"]


def test_the_store_down_is_a_503_and_slacks_retry_succeeds(desk: Pipeline) -> None:
    from tests.test_channel_contract import _rename_table

    body = event("Anyone there?")
    _rename_table(desk, "intake", "intake_away")
    try:
        assert deliver(desk, body).status_code == 503
    finally:
        _rename_table(desk, "intake_away", "intake")
    assert deliver(desk, body, retry=1).status_code == 200
    desk.wait_routed()
    assert len(desk.tickets()) == 1


# --- the agents' side: the queue channel -------------------------------------------------------
def _blocks_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


def test_a_new_ticket_is_announced_in_its_queue_channel_and_follow_ups_go_into_that_thread(
    desk: Pipeline, slack_api: SlackApi, smtp_sink: Any = None
) -> None:
    assert deliver(desk, event("My account shows the wrong VAT number", ts="1700000004.000100")).status_code == 200
    (post,) = slack_api.wait_posts(1, channel=TEAM)
    (ticket,) = desk.tickets()
    ref = ticket["ref"]
    assert "thread_ts" not in post.args or not post.args["thread_ts"]
    text = _blocks_text(post.args["blocks"])
    for essential in (ref, "Ana Customer", "slack", "normal", "general", "wrong VAT number"):
        assert essential in text, essential
    actions = next(b for b in post.args["blocks"] if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == ["omnidesk_assign", "omnidesk_resolve",
                                                            "omnidesk_escalate"]
    # The customer writes again in their thread: mirrored into the queue post's thread.
    assert deliver(desk, event("It should be DE123", ts="1700000004.000200",
                               thread_ts="1700000004.000100")).status_code == 200
    posts = slack_api.wait_posts(2, channel=TEAM)
    assert posts[1].args["thread_ts"] == post.ts
    assert "It should be DE123" in posts[1].args["text"]
    assert len(desk.tickets()) == 1


def _add_agent(p: Pipeline, email: str = "bo@example.com", name: str = "Bo Agent") -> None:
    from tickets.agents import add_agent

    with p.app.db.write() as session:
        add_agent(session, name=name, email=email)


def _queue_post_of_new_ticket(p: Pipeline, api: SlackApi, body: dict[str, Any]) -> tuple[str, str]:
    assert deliver(p, body).status_code == 200
    (post,) = api.wait_posts(1, channel=TEAM)
    (ticket,) = p.tickets()
    return ticket["ref"], post.ts


def test_an_agents_thread_reply_answers_the_customer_and_a_note_stays_internal(
    desk: Pipeline, slack_api: SlackApi
) -> None:
    _add_agent(desk)
    ref, post_ts = _queue_post_of_new_ticket(desk, slack_api, event("Where do I change my password?",
                                                                    ts="1700000005.000100"))
    slack_api.wait_posts(1, channel=SUPPORT)  # the acknowledgement
    reply = event("Under Settings > Security.", channel=TEAM, user=AGENT, ts="1700000005.000300", thread_ts=post_ts)
    first = deliver(desk, reply)
    assert first.status_code == 200 and first.json()["outcome"] == "reply", first.text
    assert deliver(desk, reply, retry=1).json()["outcome"] == "duplicate"  # Slack's retry: no second reply
    posts = slack_api.wait_posts(2, channel=SUPPORT)
    assert posts[1].args["text"] == "Under Settings > Security."
    assert posts[1].args["thread_ts"] == "1700000005.000100"  # the customer's own thread
    note = event("note: customer is on the old plan", channel=TEAM, user=AGENT, ts="1700000005.000400",
                 thread_ts=post_ts)
    assert deliver(desk, note).json()["outcome"] == "note"
    time.sleep(1.0)
    assert len(slack_api.posts(SUPPORT)) == 2  # the note never reached the customer
    shown = desk.ticket(ref)
    notes = [m for m in shown["messages"] if m["direction"] == "note"]
    assert [n["text"] for n in notes] == ["customer is on the old plan"]
    outbound = [m for m in shown["messages"] if m["direction"] == "outbound"]
    assert outbound[-1]["text"] == "Under Settings > Security." and outbound[-1]["actor"] == "bo@example.com"
    assert shown["status"] == "pending"


def test_an_unknown_slack_user_is_refused_with_an_ephemeral_message(desk: Pipeline, slack_api: SlackApi) -> None:
    ref, post_ts = _queue_post_of_new_ticket(desk, slack_api, event("Hello, a question", ts="1700000006.000100"))
    answer = deliver(desk, event("I'll take it", channel=TEAM, user=STRANGER, ts="1700000006.000300",
                                 thread_ts=post_ts))
    assert answer.json()["outcome"] == "refused"
    (told,) = slack_api.called("chat.postEphemeral")
    assert told.args["user"] == STRANGER and "who@elsewhere.test" in told.args["text"]
    assert "nothing was changed" in told.args["text"] and "omnidesk agents add" in told.args["text"]
    time.sleep(0.5)
    assert [m["direction"] for m in desk.ticket(ref)["messages"]] == ["inbound", "outbound"]


def test_an_agents_slack_reply_to_an_email_ticket_leaves_as_email(
    slack_settings: Callable[..., Settings], slack_api: SlackApi, smtp_sink: Any
) -> None:
    from tests.pipeline import make_mail

    p = Pipeline(slack_settings(outbound_smtp_url=smtp_sink.url)).start(("worker", "sweeper", "web", "smtp"))
    try:
        _add_agent(p)
        p.send(make_mail(subject="Password reset", body="I cannot log in."))
        (post,) = slack_api.wait_posts(1, channel=TEAM)
        assert "Password reset" in json.dumps(post.args["blocks"])
        smtp_sink.wait_for(1)  # the email acknowledgement
        answer = deliver(p, event("Use the reset link on the login page.", channel=TEAM, user=AGENT,
                                  ts="1700000007.000300", thread_ts=post.ts))
        assert answer.json()["outcome"] == "reply"
        mail = smtp_sink.wait_for(2)[1].message
        assert mail["To"].addresses[0].addr_spec == "ana@customer.test"
        assert "Use the reset link" in mail.get_body(("plain",)).get_content()
        assert slack_api.posts(SUPPORT) == []
        # The customer answers by email: mirrored into the queue post's thread.
        p.send(make_mail(subject=f"Re: {mail['Subject']}", body="Thanks, that worked!",
                         in_reply_to=mail["Message-ID"], references=[mail["Message-ID"]]))
        mirrored = slack_api.wait_posts(2, channel=TEAM)[1]
        assert mirrored.args["thread_ts"] == post.ts and "Thanks, that worked!" in mirrored.args["text"]
        assert len(p.tickets()) == 1
    finally:
        p.stop()


def _press(p: Pipeline, post: Any, action_id: str, *, user: str = AGENT, secret: str = SECRET) -> httpx.Response:
    from urllib.parse import urlencode

    payload = {
        "type": "block_actions", "user": {"id": user, "team_id": "T0TEST"}, "api_app_id": "A0TEST",
        "container": {"type": "message", "message_ts": post.ts, "channel_id": TEAM, "is_ephemeral": False},
        "trigger_id": uuid.uuid4().hex, "team": {"id": "T0TEST"}, "channel": {"id": TEAM, "name": "team"},
        "message": {"type": "message", "ts": post.ts, "text": post.args["text"], "blocks": post.args["blocks"]},
        "response_url": "https://hooks.slack.test/actions/x",
        "actions": [{"action_id": action_id, "block_id": "omnidesk:x", "type": "button",
                     "value": post.args["blocks"][-2]["elements"][0]["value"], "action_ts": f"{time.time():.6f}"}],
    }
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {**sign(secret, raw), "Content-Type": "application/x-www-form-urlencoded"}
    url = f"http://{p.settings.http_host}:{p.settings.http_port}/intake/slack/interactivity"
    return httpx.post(url, content=raw, headers=headers, timeout=30)


def test_buttons_assign_escalate_and_resolve_through_the_ticket_operations(desk: Pipeline, slack_api: SlackApi) -> None:
    _add_agent(desk)
    ref, _ = _queue_post_of_new_ticket(desk, slack_api, event("Hello, the app crashes", ts="1700000008.000100"))
    (post,) = slack_api.posts(TEAM)
    assert _press(desk, post, "omnidesk_assign", secret="forged").status_code == 401
    assert _press(desk, post, "omnidesk_assign", user=STRANGER).json()["outcome"] == "refused"
    assert desk.ticket(ref)["assignee"] in (None, "")
    assert _press(desk, post, "omnidesk_assign").json()["outcome"] == "assign"
    assert desk.ticket(ref)["assignee"] == "bo@example.com"
    assert _press(desk, post, "omnidesk_escalate").json()["outcome"] == "escalate"
    assert desk.ticket(ref)["status"] == "escalated"
    assert _press(desk, post, "omnidesk_resolve").json()["outcome"] == "resolve"
    assert desk.ticket(ref)["status"] == "resolved"
    updates = slack_api.called("chat.update")
    assert len(updates) == 3 and "Resolved by Bo Agent" in json.dumps(updates[-1].args["blocks"])
    assert updates[-1].args["ts"] == post.ts


# --- edits, deletions, files --------------------------------------------------------------------
def _stored_inbound(p: Pipeline) -> list[Any]:
    from tickets.models import TicketMessage

    with p.app.db.read() as session:
        rows = session.query(TicketMessage).filter(TicketMessage.direction == "inbound").order_by(TicketMessage.id)
        return [(m.text, dict(m.event or {})) for m in rows]


def test_edits_keep_the_original_and_deletions_mark_the_message(desk: Pipeline) -> None:
    assert deliver(desk, event("My order 12 is late", ts="1700000009.000100")).status_code == 200
    desk.wait_routed()
    edited = {"type": "message", "subtype": "message_changed", "channel": SUPPORT, "hidden": True,
              "ts": "1700000009.000900", "channel_type": "channel",
              "message": {"type": "message", "user": CUSTOMER, "text": "My order 13 is late", "ts": "1700000009.000100",
                          "edited": {"user": CUSTOMER, "ts": "1700000009.000900"}},
              "previous_message": {"type": "message", "user": CUSTOMER, "text": "My order 12 is late",
                                   "ts": "1700000009.000100"}}
    body = {**event("x"), "event": edited}
    assert deliver(desk, body).json()["outcome"] == "edited"
    assert deliver(desk, body, retry=1).json()["outcome"] == "unchanged"
    ((text, record),) = _stored_inbound(desk)
    assert text == "My order 13 is late" and record["original_text"] == "My order 12 is late"
    deleted = {"type": "message", "subtype": "message_deleted", "channel": SUPPORT, "hidden": True,
               "ts": "1700000009.001000", "deleted_ts": "1700000009.000100", "channel_type": "channel",
               "previous_message": {"type": "message", "user": CUSTOMER, "text": "My order 13 is late",
                                    "ts": "1700000009.000100"}}
    assert deliver(desk, {**event("x"), "event": deleted}).json()["outcome"] == "deleted"
    ((text, record),) = _stored_inbound(desk)
    assert record["deleted"] is True and text == "My order 13 is late"
    assert len(desk.tickets()) == 1


def test_shared_files_are_downloaded_with_the_bot_token_into_the_blob_store(
    desk: Pipeline, slack_api: SlackApi
) -> None:
    slack_api.files["/files/T0TEST-F0001/download/receipt.pdf"] = b"%PDF-1.4 receipt"
    files = [{"id": "F0001", "name": "receipt.pdf", "mimetype": "application/pdf", "size": 16,
              "url_private_download": slack_api.url + "files/T0TEST-F0001/download/receipt.pdf"},
             {"id": "F0002", "name": "evil.txt", "url_private_download": "https://attacker.test/steal"}]
    body = event("Here is the receipt", subtype="file_share", files=files)
    assert deliver(desk, body).status_code == 200
    desk.wait_routed()
    (ticket,) = desk.tickets()
    inbound = next(m for m in desk.ticket(ticket["ref"])["messages"] if m["direction"] == "inbound")
    (attachment,) = inbound["attachments"]
    assert attachment["filename"] == "receipt.pdf" and attachment["content_type"] == "application/pdf"
    assert desk.app.blobs.get(attachment["sha256"]) == b"%PDF-1.4 receipt"


def test_a_slack_customer_and_their_email_are_one_contact(
    slack_settings: Callable[..., Settings], slack_api: SlackApi, smtp_sink: Any
) -> None:
    from tests.pipeline import make_mail
    from tickets.contacts import show_contact

    p = Pipeline(slack_settings(outbound_smtp_url=smtp_sink.url)).start(("worker", "sweeper", "web", "smtp"))
    try:
        p.send(make_mail(subject="Password reset", body="I cannot log in."))
        p.wait_routed()
        assert deliver(p, event("Hello again, from Slack")).status_code == 200
        p.wait_until(lambda: len(p.tickets()) == 2, what="the Slack ticket")
        assert {t["contact"] for t in p.tickets()} == {"ana@customer.test"}
        with p.app.db.read() as session:
            contact = show_contact(session, f"slack:{CUSTOMER}")
        assert {i.identity for i in contact.identities} == {"email:ana@customer.test", f"slack:{CUSTOMER}"}
    finally:
        p.stop()


def test_a_support_channels_queue_reaches_routing_and_its_queue_channel(
    slack_settings: Callable[..., Settings], slack_api: SlackApi, tmp_path: Path
) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text(
        "version: 1\n"
        "defaults: {queue: general, priority: normal, auto_reply: false}\n"
        "queues:\n  - {id: general, name: General}\n  - {id: billing, name: Billing}\n"
        "rules:\n"
        "  - name: Slack billing channel\n"
        "    when: {header.x-slack-queue: billing}\n"
        "    then: {queue: billing}\n", encoding="utf-8")
    channels = tmp_path / "channels-billing.yaml"
    channels.write_text(
        f"slack:\n  support_channels:\n    - {{id: {SUPPORT}, queue: billing}}\n"
        "  queue_channels:\n    billing: C0BILLTEAM\n", encoding="utf-8")
    p = Pipeline(slack_settings(rules_file=rules, channels_file=channels)).start(("worker", "sweeper", "web"))
    try:
        assert deliver(p, event("Why was I charged twice?")).status_code == 200
        (post,) = slack_api.wait_posts(1, channel="C0BILLTEAM")
        (ticket,) = p.tickets()
        assert ticket["queue"] == "billing" and ticket["ref"] in json.dumps(post.args["blocks"])
    finally:
        p.stop()
