"""The channel contract, the same for every edge: each later channel joins by adding an ``Edge``.

For every edge, on SQLite and on PostgreSQL:

- a duplicate delivery is one ticket message;
- the store unavailable means a temporary failure at the edge (SMTP 451, HTTP 503) and nothing
  half-written; the retry succeeds;
- unparseable input is quarantined with its raw payload and the quarantine replay routes it after
  the cause is fixed;
- the acknowledgement leaves only after the commit, through the channel's composer (an email for
  the web form's submitter, a text message through the local Twilio server for SMS and WhatsApp, a
  post in the customer's thread for Slack), and the customer's answer on that channel continues
  the same ticket;
- ``route explain`` on the stored payload gives the decision routing recorded.

IMAP runs the same checks in ``tests/test_imap.py`` against Dovecot (it needs its own server).
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from config.settings import Settings
from tests.peers.smtp_sink import SmtpSink
from tests.peers.slack_api import TOKEN as SLACK_TOKEN
from tests.peers.slack_api import SlackApi
from tests.peers.slack_api import sign as slack_sign
from tests.pipeline import Pipeline, make_mail

SLACK_SECRET = "contract-signing-secret"
SLACK_DM = "D0CONTRACT"
SLACK_USER = "U0ANA00001"


# --- the edges ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    """An acknowledgement as the customer received it, whatever carried it."""

    channel: str
    to: str
    text: str
    raw: Any


@dataclass(frozen=True)
class Edge:
    name: str
    components: tuple[str, ...]
    # deliver(pipeline, token) -> True when the edge acknowledged (250 / 2xx), False on a
    # temporary failure (451 / 503); the same token is the same message (a redelivery).
    deliver: Callable[[Pipeline, str], bool]
    # A payload the channel's parser refuses (quarantined, not refused).
    deliver_garbage: Callable[[Pipeline], None]
    # What the customer has received so far (after waiting for at least ``count``).
    acks: Callable[[Pipeline, int], list[Ack]] = lambda p, count: _mail_acks(p, count)
    # The customer answers an acknowledgement the way that channel answers.
    answer: Callable[[Pipeline, Ack], None] = lambda p, ack: _mail_answer(p, ack)
    ticket_channel: str = "email"
    contact: str = "ana@customer.test"
    ack_channel: str = "email"
    # How the answer finds the ticket (the decision's thread.via).
    answer_via: str = "in-reply-to"
    # What else the acknowledgement must show on that channel (beyond naming the ticket).
    check_ack: Callable[[Ack], None] | None = None


def _smtp_deliver(p: Pipeline, token: str) -> bool:
    mail = make_mail(subject=f"Order {token} never arrived", message_id=f"<{token}@customer.test>")
    try:
        p.send(mail)
    except smtplib.SMTPDataError as exc:
        assert exc.smtp_code == 451 and b"4.3.0" in exc.smtp_error
        return False
    return True


def _smtp_garbage(p: Pipeline) -> None:
    # No usable From: quarantined for "no sender", accepted with 250 so the sender stops retrying.
    raw = b"Subject: who am I\r\nMessage-ID: <nobody-" + uuid.uuid4().hex.encode() + b"@x.test>\r\n\r\nhello\r\n"
    with smtplib.SMTP(p.settings.smtp_host, p.settings.smtp_port, timeout=30) as client:
        client.sendmail("", ["support@example.com"], raw)


def _form_url(p: Pipeline) -> str:
    return f"http://{p.settings.http_host}:{p.settings.http_port}/intake/form"


def _form_deliver(p: Pipeline, token: str) -> bool:
    body = {
        "submission_id": f"sub-{token}",
        "name": "Ana Customer",
        "email": "ana@customer.test",
        "subject": f"Order {token} never arrived",
        "message": "Hello, my order never arrived. Can you help?",
    }
    response = httpx.post(_form_url(p), json=body, timeout=30)
    if response.status_code == 503:
        assert "try again" in response.text.lower()
        return False
    assert response.status_code == 202, response.text
    return True


def _form_garbage(p: Pipeline) -> None:
    # A stored form payload its parser refuses: logged through the same ``ingest`` the endpoint
    # uses, as an older release's payload (or a hand-edited one) would be.
    from datetime import datetime, timezone

    from intake.adapter import Payload

    accepted = p.app.ingest(Payload(channel="webform", raw=b'{"not": "a submission"}',
                                    received_at=datetime.now(timezone.utc), source="webform:default"))
    assert accepted.quarantined


def _mail_acks(p: Pipeline, count: int) -> list[Ack]:
    sink: SmtpSink = p.peers["smtp"]  # type: ignore[attr-defined]
    mails = sink.wait_for(count)
    return [Ack("email", m.message["To"].addresses[0].addr_spec, str(m.message["Subject"]), m.message)
            for m in mails]


def _mail_answer(p: Pipeline, ack: Ack) -> None:
    mail = ack.raw
    reply = make_mail(subject=f"Re: {mail['Subject']}", body="Here is a photo of the box.",
                      in_reply_to=mail["Message-ID"], references=[mail["Message-ID"]])
    with smtplib.SMTP(p.settings.smtp_host, p.settings.smtp_port, timeout=30) as client:
        client.send_message(reply)


# --- Twilio (SMS, WhatsApp) ----------------------------------------------------------------------
_CUSTOMER_PHONE = "+491710000000"
_OUR_NUMBER = "+4915700000000"


def _twilio_message(p: Pipeline, sid: str, body: str, *, whatsapp: bool) -> Any:
    from tests.peers.twilio_api import post_webhook

    prefix = "whatsapp:" if whatsapp else ""
    params = {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": p.settings.twilio_account_sid,
              "From": prefix + _CUSTOMER_PHONE, "To": prefix + _OUR_NUMBER, "Body": body, "NumMedia": "0",
              "ApiVersion": "2010-04-01"}
    if whatsapp:
        params.update({"ProfileName": "Ana Customer", "WaId": _CUSTOMER_PHONE.lstrip("+")})
    base = f"http://{p.settings.http_host}:{p.settings.http_port}"
    return post_webhook(base, "/intake/twilio/messages", params,
                        p.settings.twilio_auth_token.get_secret_value())


def _twilio_deliver(whatsapp: bool) -> Callable[[Pipeline, str], bool]:
    def deliver(p: Pipeline, token: str) -> bool:
        # The token makes the MessageSid: the same token is Twilio retrying the same webhook.
        sid = "SM" + uuid.uuid5(uuid.NAMESPACE_URL, token).hex
        response = _twilio_message(p, sid, f"Order {token} never arrived", whatsapp=whatsapp)
        if response.status_code == 503:
            assert "retry" in response.text.lower()
            return False
        assert response.status_code == 200, response.text
        return True

    return deliver


def _twilio_garbage(p: Pipeline) -> None:
    # Signed, but no number in From: stored (Twilio must not retry it) and quarantined.
    from tests.peers.twilio_api import post_webhook

    base = f"http://{p.settings.http_host}:{p.settings.http_port}"
    params = {"MessageSid": "SM" + uuid.uuid4().hex, "From": "", "To": _OUR_NUMBER, "Body": "hello"}
    response = post_webhook(base, "/intake/twilio/messages", params, p.settings.twilio_auth_token.get_secret_value())
    assert response.status_code == 200


def _twilio_acks(p: Pipeline, count: int) -> list[Ack]:
    from tests.peers.twilio_api import FakeTwilio

    api: FakeTwilio = p.peers["twilio"]  # type: ignore[attr-defined]
    p.wait_until(lambda: len(api.messages) >= count, 30, f"{count} messages at Twilio")
    return [Ack("whatsapp" if m["to"].startswith("whatsapp:") else "sms", m["to"].removeprefix("whatsapp:"),
                m["body"], m) for m in api.messages]


def _twilio_answer(p: Pipeline, ack: Ack) -> None:
    response = _twilio_message(p, "SM" + uuid.uuid4().hex, "Here is a photo of the box.",
                               whatsapp=ack.channel == "whatsapp")
    assert response.status_code == 200


# --- Slack (a DM to the app) ---------------------------------------------------------------------
def _slack_event(token: str, *, text: str, thread_ts: str = "", ts: str = "") -> bytes:
    # A DM to the app: a support request with nothing configured but the secret and the token,
    # so ``route explain`` parses it without the channels file.
    root = f"{1_700_000_000 + int(token, 16) % 100_000_000}.000100"
    event: dict[str, Any] = {"type": "message", "channel": SLACK_DM, "channel_type": "im", "user": SLACK_USER,
                             "text": text, "ts": ts or root}
    if thread_ts:
        event["thread_ts"] = thread_ts
    body = {"type": "event_callback", "team_id": "T0TEST", "event_id": f"Ev{token}", "event_time": 1700000000,
            "event": event, "authorizations": [{"user_id": "UBOT0001", "is_bot": True}]}
    return json.dumps(body).encode()


def _slack_post(p: Pipeline, raw: bytes) -> httpx.Response:
    url = f"http://{p.settings.http_host}:{p.settings.http_port}/intake/slack/events"
    return httpx.post(url, content=raw, headers=slack_sign(SLACK_SECRET, raw), timeout=30)


def _slack_deliver(p: Pipeline, token: str) -> bool:
    response = _slack_post(p, _slack_event(token, text=f"Order {token} never arrived"))
    if response.status_code == 503:
        return False
    assert response.status_code == 200, response.text
    return True


def _slack_garbage(p: Pipeline) -> None:
    # Signed, so it is Slack's, but not JSON: stored in quarantine and acknowledged.
    assert _slack_post(p, b"{not json " + uuid.uuid4().hex.encode()).status_code == 200


def _slack_acks(p: Pipeline, count: int) -> list[Ack]:
    api: SlackApi = p.peers["slack"]  # type: ignore[attr-defined]
    # A post into the DM with the app reaches the user it is a DM with.
    return [Ack("slack", SLACK_USER if post.args["channel"] == SLACK_DM else str(post.args["channel"]),
                str(post.args["text"]), post) for post in api.wait_posts(count)]


def _slack_check(ack: Ack) -> None:
    assert ack.raw.args["thread_ts"].endswith(".000100")  # in the customer's own thread


def _slack_answer(p: Pipeline, ack: Ack) -> None:
    root = ack.raw.args["thread_ts"]
    body = json.loads(_slack_event(uuid.uuid4().hex[:12], text="Here is a photo of the box.",
                                   thread_ts=root, ts=f"{float(root) + 5:.6f}"))
    assert _slack_post(p, json.dumps(body).encode()).status_code == 200


def _twilio_edge(name: str, whatsapp: bool) -> Edge:
    channel = "whatsapp" if whatsapp else "sms"
    return Edge(name, ("worker", "sweeper", "web"), _twilio_deliver(whatsapp), _twilio_garbage,
                acks=_twilio_acks, answer=_twilio_answer, ticket_channel=channel, contact=_CUSTOMER_PHONE,
                ack_channel=channel, answer_via="conversation")


EDGES = [
    Edge("smtp", ("worker", "sweeper", "smtp"), _smtp_deliver, _smtp_garbage),
    Edge("form", ("worker", "sweeper", "web", "smtp"), _form_deliver, _form_garbage, ticket_channel="webform"),
    _twilio_edge("sms", whatsapp=False),
    _twilio_edge("whatsapp", whatsapp=True),
    Edge("slack", ("worker", "sweeper", "web"), _slack_deliver, _slack_garbage, acks=_slack_acks,
         answer=_slack_answer, ticket_channel="slack", contact=SLACK_USER, ack_channel="slack",
         answer_via="thread_ts", check_ack=_slack_check),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=EDGES, ids=[e.name for e in EDGES])
def edge(request: pytest.FixtureRequest) -> Edge:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest, store: str, edge: Edge, make_settings: Callable[..., Settings], smtp_sink: SmtpSink
) -> Iterator[Pipeline]:
    overrides: dict[str, Any] = {"outbound_smtp_url": smtp_sink.url, "sweep_interval_seconds": 0.5,
                                 "sweep_grace_seconds": 1.0, "form_rate_limit_per_minute": 0}
    peers: dict[str, Any] = {"smtp": smtp_sink}
    if edge.ack_channel in ("sms", "whatsapp"):
        from tests.peers.twilio_api import FakeTwilio

        api = FakeTwilio(account_sid="AC" + "c0" * 16, auth_token="contract-token").start()
        request.addfinalizer(api.stop)
        peers["twilio"] = api
        overrides.update(twilio_account_sid=api.account_sid, twilio_auth_token=api.auth_token,
                         twilio_api_base=api.url, http_host="127.0.0.1")
    if edge.ack_channel == "slack":
        slack = SlackApi().start()
        request.addfinalizer(slack.stop)
        peers["slack"] = slack
        overrides.update(slack_signing_secret=SLACK_SECRET, slack_bot_token=SLACK_TOKEN, slack_api_base=slack.base,
                         slack_min_post_interval_seconds=0.0)
    if store == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    p = Pipeline(make_settings(**overrides))
    p.peers = peers  # type: ignore[attr-defined]
    p.start(edge.components)
    if "web" in edge.components:
        _wait_serving(p)
    yield p
    p.stop()


def _wait_serving(p: Pipeline) -> None:
    def up() -> bool:
        try:
            return httpx.get(f"http://{p.settings.http_host}:{p.settings.http_port}/healthz", timeout=1).is_success
        except httpx.HTTPError:
            return False

    p.wait_until(up, 15, "the HTTP server")


def _inbound(p: Pipeline) -> list[dict[str, Any]]:
    return [m for t in p.tickets() for m in p.ticket(t["ref"])["messages"] if m["direction"] == "inbound"]


# --- the contract ------------------------------------------------------------------------------
def test_a_duplicate_delivery_is_one_ticket_message(pipeline: Pipeline, edge: Edge, smtp_sink: SmtpSink) -> None:
    token = uuid.uuid4().hex[:12]
    assert edge.deliver(pipeline, token)
    assert edge.deliver(pipeline, token)  # the source retried after losing our answer
    pipeline.wait_routed()
    edge.acks(pipeline, 1)
    assert len(pipeline.tickets()) == 1
    assert len(_inbound(pipeline)) == 1
    assert len(edge.acks(pipeline, 1)) == 1  # one acknowledgement


def test_store_unavailable_is_a_temporary_failure_and_nothing_is_lost(
    pipeline: Pipeline, edge: Edge, smtp_sink: SmtpSink
) -> None:
    token = uuid.uuid4().hex[:12]
    _rename_table(pipeline, "intake", "intake_away")
    try:
        assert edge.deliver(pipeline, token) is False
    finally:
        _rename_table(pipeline, "intake_away", "intake")
    assert pipeline.tickets() == []  # nothing half-written
    assert edge.deliver(pipeline, token)  # the source retries later
    edge.acks(pipeline, 1)
    assert len(pipeline.tickets()) == 1


def test_unparseable_input_is_quarantined_and_replays(pipeline: Pipeline, edge: Edge) -> None:
    from intake.quarantine import replay
    from tickets.queries import list_quarantine

    edge.deliver_garbage(pipeline)
    with pipeline.app.db.read() as session:
        rows = list_quarantine(session)
    assert len(rows) == 1 and rows[0]["reason"] and rows[0]["raw_sha256"]
    # Nothing fixed yet: the replay parses it with the same adapter and says why it still fails.
    outcome = replay(pipeline.app.intake_log, rows[0]["id"], registry=pipeline.app.registry,
                     enqueue=pipeline.app.route_job)
    assert outcome.outcome == "still-unparseable" and outcome.detail
    # The messages behind it flow on.
    assert edge.deliver(pipeline, uuid.uuid4().hex[:12])
    pipeline.wait_routed()
    assert len(pipeline.tickets()) == 1


def test_acknowledgement_after_commit_and_the_customer_s_answer_threads(
    pipeline: Pipeline, edge: Edge
) -> None:
    token = uuid.uuid4().hex[:12]
    assert edge.deliver(pipeline, token)
    (ack,) = edge.acks(pipeline, 1)
    (ticket,) = pipeline.tickets()
    ref = ticket["ref"]
    assert ticket["channel"] == edge.ticket_channel
    assert ticket["contact"] == edge.contact  # the form's contact is the email identity
    assert ack.channel == edge.ack_channel and ack.to == edge.contact
    if ack.channel == "email":
        assert ack.raw["Subject"] == f"[{ref}] Re: Order {token} never arrived"
        assert ack.raw["Auto-Submitted"] == "auto-replied"
    else:
        assert ref in ack.text
    if edge.check_ack is not None:
        edge.check_ack(ack)
    # The acknowledgement is on the timeline, composed by the channel that carried it.
    shown = pipeline.ticket(ref)
    assert [m["direction"] for m in shown["messages"]] == ["inbound", "outbound"]
    assert shown["messages"][1]["channel"] == edge.ack_channel

    # The customer answers the acknowledgement: the same ticket, whatever the channel.
    edge.answer(pipeline, ack)
    pipeline.wait_for_messages(3)
    shown = pipeline.ticket(ref)
    assert [m["direction"] for m in shown["messages"]] == ["inbound", "outbound", "inbound"]
    assert shown["messages"][2]["decision"]["thread"]["via"] == edge.answer_via
    assert len(pipeline.tickets()) == 1


def test_explain_on_the_stored_payload_gives_the_routed_decision(
    pipeline: Pipeline, edge: Edge, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    from tickets.models import IntakeRow

    assert edge.deliver(pipeline, uuid.uuid4().hex[:12])
    edge.acks(pipeline, 1)
    (ticket,) = pipeline.tickets()
    routed = pipeline.ticket(ticket["ref"])["messages"][0]["decision"]
    with pipeline.app.db.read() as session:
        row = session.query(IntakeRow).one()
        raw = pipeline.app.blobs.get(row.raw_sha256)
        channel = row.channel
    stored = tmp_path / "payload"
    stored.write_bytes(raw)
    # Explained against a store that does not know this sender (no history), like the router saw.
    env = {**_cli_env(pipeline.settings), "OMNIDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    out = subprocess.run([sys.executable, "-m", "omnidesk.cli", "route", "explain", str(stored),
                          "--channel", channel, "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    explained = json.loads(out.stdout)
    assert explained["actions"] == routed["actions"]
    assert explained["acknowledgement"]["suppressed"] == routed["auto_reply_suppressed"]


# --- helpers -----------------------------------------------------------------------------------
def _rename_table(p: Pipeline, old: str, new: str) -> None:
    url = p.app.db.engine.url
    if p.app.db.is_sqlite:
        with sqlite3.connect(str(url.database)) as conn:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
    else:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def _cli_env(settings: Settings) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIDESK_")}
    env["OMNIDESK_DATA_DIR"] = str(settings.data_dir)
    env["OMNIDESK_SMTP_DOMAINS"] = ",".join(settings.smtp_domains)
    env["OMNIDESK_SUPPORT_ADDRESS"] = settings.support_address
    env["OMNIDESK_RULES_FILE"] = str(settings.rules_file)
    return env
