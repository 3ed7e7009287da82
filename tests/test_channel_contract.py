"""The channel contract, the same for every edge: each later channel joins by adding an ``Edge``.

For every edge, on SQLite and on PostgreSQL:

- a duplicate delivery is one ticket message;
- the store unavailable means a temporary failure at the edge (SMTP 451, HTTP 503) and nothing
  half-written; the retry succeeds;
- unparseable input is quarantined with its raw payload and the quarantine replay routes it after
  the cause is fixed;
- the acknowledgement leaves only after the commit, through the channel's composer (an email for
  the web form's submitter, a post in the customer's thread for Slack), and the customer's answer
  to it (an email reply, a Slack thread reply) continues the same ticket;
- ``route explain`` on the stored payload gives the decision routing recorded.

IMAP runs the same checks in ``tests/test_imap.py`` against Dovecot (it needs its own server).
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from config.settings import Settings
from tests.peers.slack_api import TOKEN as SLACK_TOKEN
from tests.peers.slack_api import SlackApi
from tests.peers.slack_api import sign as slack_sign
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import Pipeline, make_mail

SLACK_SECRET = "contract-signing-secret"
SLACK_DM = "D0CONTRACT"


# --- the edges ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peers:
    smtp: SmtpSink
    slack: SlackApi


@dataclass(frozen=True)
class Ack:
    """An acknowledgement as the customer got it: its text, and what the channel needs to answer it."""

    text: str
    raw: Any


def _mail_acks(p: Pipeline, peers: Peers, count: int) -> list[Ack]:
    return [Ack("", m.message) for m in peers.smtp.wait_for(count)]


def _mail_check(ref: str, ack: Ack, token: str) -> None:
    mail = ack.raw
    assert mail["Subject"] == f"[{ref}] Re: Order {token} never arrived"
    assert mail["To"].addresses[0].addr_spec == "ana@customer.test"
    assert mail["Auto-Submitted"] == "auto-replied"


def _mail_answer(p: Pipeline, ack: Ack) -> None:
    mail = ack.raw
    reply = make_mail(subject=f"Re: {mail['Subject']}", body="Here is a photo of the box.",
                      in_reply_to=mail["Message-ID"], references=[mail["Message-ID"]])
    with smtplib.SMTP(p.settings.smtp_host, p.settings.smtp_port, timeout=30) as client:
        client.send_message(reply)


@dataclass(frozen=True)
class Edge:
    name: str
    components: tuple[str, ...]
    # deliver(pipeline, token) -> True when the edge acknowledged (250 / 2xx), False on a
    # temporary failure (451 / 503); the same token is the same message (a redelivery).
    deliver: Callable[[Pipeline, str], bool]
    # A payload the channel's parser refuses (quarantined, not refused).
    deliver_garbage: Callable[[Pipeline], None]
    # The ticket's channel and contact, the acknowledgements the customer got (waiting for them),
    # what one must say, and how the customer answers it.
    ticket_channel: str = "email"
    contact: str = "ana@customer.test"
    ack_channel: str = "email"
    reply_via: str = "in-reply-to"
    acks: Callable[[Pipeline, Peers, int], list[Ack]] = _mail_acks
    check_ack: Callable[[str, Ack, str], None] = _mail_check
    answer: Callable[[Pipeline, Ack], None] = _mail_answer


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


def _slack_event(token: str, *, text: str, thread_ts: str = "", ts: str = "") -> bytes:
    # A DM to the app: a support request with nothing configured but the secret and the token,
    # so ``route explain`` parses it without the channels file.
    root = f"{1_700_000_000 + int(token, 16) % 100_000_000}.000100"
    event: dict[str, Any] = {"type": "message", "channel": SLACK_DM, "channel_type": "im", "user": "U0ANA00001",
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


def _slack_acks(p: Pipeline, peers: Peers, count: int) -> list[Ack]:
    return [Ack(str(post.args["text"]), post) for post in peers.slack.wait_posts(count)]


def _slack_check(ref: str, ack: Ack, token: str) -> None:
    post = ack.raw
    assert post.args["channel"] == SLACK_DM and post.args["thread_ts"].endswith(".000100")
    assert ref in ack.text


def _slack_answer(p: Pipeline, ack: Ack) -> None:
    root = ack.raw.args["thread_ts"]
    body = json.loads(_slack_event(uuid.uuid4().hex[:12], text="Here is a photo of the box.",
                                   thread_ts=root, ts=f"{float(root) + 5:.6f}"))
    assert _slack_post(p, json.dumps(body).encode()).status_code == 200


EDGES = [
    Edge("smtp", ("worker", "sweeper", "smtp"), _smtp_deliver, _smtp_garbage),
    Edge("form", ("worker", "sweeper", "web", "smtp"), _form_deliver, _form_garbage, ticket_channel="webform"),
    Edge("slack", ("worker", "sweeper", "web"), _slack_deliver, _slack_garbage, ticket_channel="slack",
         contact="U0ANA00001", ack_channel="slack", reply_via="thread_ts", acks=_slack_acks,
         check_ack=_slack_check, answer=_slack_answer),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=EDGES, ids=[e.name for e in EDGES])
def edge(request: pytest.FixtureRequest) -> Edge:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def slack_api() -> Iterator[SlackApi]:
    api = SlackApi().start()
    yield api
    api.stop()


@pytest.fixture
def peers(smtp_sink: SmtpSink, slack_api: SlackApi) -> Peers:
    return Peers(smtp_sink, slack_api)


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest, store: str, edge: Edge, make_settings: Callable[..., Settings], smtp_sink: SmtpSink,
    slack_api: SlackApi,
) -> Iterator[Pipeline]:
    overrides: dict[str, Any] = {"outbound_smtp_url": smtp_sink.url, "sweep_interval_seconds": 0.5,
                                 "sweep_grace_seconds": 1.0, "form_rate_limit_per_minute": 0,
                                 "slack_signing_secret": SLACK_SECRET, "slack_bot_token": SLACK_TOKEN,
                                 "slack_api_base": slack_api.base, "slack_min_post_interval_seconds": 0.0}
    if store == "postgresql":
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    p = Pipeline(make_settings(**overrides)).start(edge.components)
    yield p
    p.stop()


def _inbound(p: Pipeline) -> list[dict[str, Any]]:
    return [m for t in p.tickets() for m in p.ticket(t["ref"])["messages"] if m["direction"] == "inbound"]


# --- the contract ------------------------------------------------------------------------------
def test_a_duplicate_delivery_is_one_ticket_message(pipeline: Pipeline, edge: Edge, peers: Peers) -> None:
    token = uuid.uuid4().hex[:12]
    assert edge.deliver(pipeline, token)
    assert edge.deliver(pipeline, token)  # the source retried after losing our answer
    pipeline.wait_routed()
    edge.acks(pipeline, peers, 1)
    assert len(pipeline.tickets()) == 1
    assert len(_inbound(pipeline)) == 1
    time.sleep(0.5)
    assert len(peers.smtp.received) + len(peers.slack.posts()) == 1  # one acknowledgement


def test_store_unavailable_is_a_temporary_failure_and_nothing_is_lost(
    pipeline: Pipeline, edge: Edge, peers: Peers
) -> None:
    token = uuid.uuid4().hex[:12]
    _rename_table(pipeline, "intake", "intake_away")
    try:
        assert edge.deliver(pipeline, token) is False
    finally:
        _rename_table(pipeline, "intake_away", "intake")
    assert pipeline.tickets() == []  # nothing half-written
    assert edge.deliver(pipeline, token)  # the source retries later
    edge.acks(pipeline, peers, 1)
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


def test_acknowledgement_after_commit_and_the_customers_answer_threads(
    pipeline: Pipeline, edge: Edge, peers: Peers
) -> None:
    token = uuid.uuid4().hex[:12]
    assert edge.deliver(pipeline, token)
    ack = edge.acks(pipeline, peers, 1)[0]
    (ticket,) = pipeline.tickets()
    ref = ticket["ref"]
    assert ticket["channel"] == edge.ticket_channel
    assert ticket["contact"] == edge.contact  # the form's contact is the email identity
    edge.check_ack(ref, ack, token)
    # The acknowledgement is on the timeline, composed by the channel that answers.
    shown = pipeline.ticket(ref)
    assert [m["direction"] for m in shown["messages"]] == ["inbound", "outbound"]
    assert shown["messages"][1]["channel"] == edge.ack_channel

    # The customer answers the acknowledgement on its channel: the same ticket.
    edge.answer(pipeline, ack)
    pipeline.wait_for_messages(3)
    shown = pipeline.ticket(ref)
    assert [m["direction"] for m in shown["messages"]] == ["inbound", "outbound", "inbound"]
    assert shown["messages"][2]["decision"]["thread"]["via"] == edge.reply_via
    assert len(pipeline.tickets()) == 1


def test_explain_on_the_stored_payload_gives_the_routed_decision(
    pipeline: Pipeline, edge: Edge, peers: Peers, tmp_path: Path
) -> None:
    from tickets.models import IntakeRow

    assert edge.deliver(pipeline, uuid.uuid4().hex[:12])
    edge.acks(pipeline, peers, 1)
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
