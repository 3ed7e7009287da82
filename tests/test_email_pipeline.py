"""The whole email path, as a customer and an agent see it: SMTP in, ticket, acknowledgement out,
reply threaded — on SQLite with the embedded broker, and on PostgreSQL with Redis."""

from __future__ import annotations

import smtplib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from config.settings import Settings
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import Pipeline, make_mail, unique_id


@pytest.fixture
def pipeline(make_settings: Callable[..., Settings], smtp_sink: SmtpSink) -> Iterator[Pipeline]:
    p = Pipeline(make_settings(outbound_smtp_url=smtp_sink.url)).start()
    yield p
    p.stop()


@pytest.fixture
def pg_redis_pipeline(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink, postgres_url: str, redis_url: str
) -> Iterator[Pipeline]:
    from dramatiq.brokers.redis import RedisBroker

    import uuid

    # Each test gets its own Redis namespace so parallel or leftover runs never share queues.
    broker = RedisBroker(
        url=redis_url, namespace=f"omnidesk-test-{uuid.uuid4().hex[:8]}", heartbeat_timeout=5000
    )
    settings = make_settings(
        outbound_smtp_url=smtp_sink.url, database_url=postgres_url, redis_url=redis_url
    )
    p = Pipeline(settings, broker=broker).start()
    yield p
    p.stop()


@pytest.fixture
def rabbitmq_pipeline(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink, amqp_url: str
) -> Iterator[Pipeline]:
    from workers.broker import build_broker

    settings = make_settings(outbound_smtp_url=smtp_sink.url, broker_url=amqp_url)
    broker = build_broker(settings)
    p = Pipeline(settings, broker=broker)
    broker.flush_all()  # queues are shared on the server: start from empty ones
    p.start()
    yield p
    p.stop()


def _first_contact_flow(p: Pipeline, sink: SmtpSink) -> None:
    """Customer writes in, gets an acknowledgement with the ticket number, replies to it."""
    original = make_mail(to="Help <support@example.com>", subject="Parcel arrived damaged")
    p.send(original)
    ack = sink.wait_for(1)[0].message
    tickets = p.tickets()
    assert len(tickets) == 1
    ref = tickets[0]["ref"]
    assert ref.startswith("OD-")
    assert tickets[0]["contact"] == "ana@customer.test"
    assert tickets[0]["channel"] == "email"
    assert tickets[0]["queue"] == "logistics"  # the default rules: damaged deliveries

    assert ack["Subject"] == f"[{ref}] Re: Parcel arrived damaged"
    assert ack["From"].addresses[0].addr_spec == "support@example.com"
    assert ack["To"].addresses[0].addr_spec == "ana@customer.test"
    assert ack["In-Reply-To"] == original["Message-ID"]
    assert original["Message-ID"] in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Message-ID"].endswith("@example.com>")
    assert ref in ack.get_body(("plain",)).get_content()
    assert ref in ack.get_body(("html",)).get_content()

    reply = make_mail(
        subject=f"Re: {ack['Subject']}",
        body="Here is a photo of the box.\n\nOn Monday Support wrote:\n> We got your message",
        in_reply_to=ack["Message-ID"],
        references=[original["Message-ID"], ack["Message-ID"]],
    )
    p.send(reply)
    p.wait_for_messages(3)
    ticket = p.ticket(ref)
    assert [m["direction"] for m in ticket["messages"]] == ["inbound", "outbound", "inbound"]
    assert ticket["messages"][2]["text"].startswith("Here is a photo of the box.")
    assert ticket["messages"][2]["decision"]["kind"] == "follow_up"
    assert ticket["messages"][2]["decision"]["thread"]["via"] == "in-reply-to"
    assert len(p.tickets()) == 1
    # A follow-up gets no second acknowledgement.
    assert len(sink.received) == 1


def test_customer_mail_becomes_ticket_and_reply_threads(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    _first_contact_flow(pipeline, smtp_sink)


@pytest.mark.postgres
@pytest.mark.redis
def test_same_flow_on_postgres_and_redis(pg_redis_pipeline: Pipeline, smtp_sink: SmtpSink) -> None:
    _first_contact_flow(pg_redis_pipeline, smtp_sink)


def test_same_flow_on_rabbitmq(rabbitmq_pipeline: Pipeline, smtp_sink: SmtpSink) -> None:
    _first_contact_flow(rabbitmq_pipeline, smtp_sink)


def test_duplicate_delivery_gives_one_ticket_message(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    mail = make_mail()
    pipeline.send(mail)
    pipeline.send(mail)  # the sending server retried after a lost 250
    pipeline.send(
        mail, rcpt=["billing@help.example.org"]
    )  # and once more to another address of ours
    smtp_sink.wait_for(1)
    pipeline.wait_routed()
    tickets = pipeline.tickets()
    assert len(tickets) == 1
    assert tickets[0]["message_count"] == 2  # the customer's message and our acknowledgement
    assert len(smtp_sink.received) == 1


def test_reply_arriving_before_its_parent_lands_on_the_same_ticket(pipeline: Pipeline) -> None:
    parent_id = unique_id()
    grandparent_id = unique_id()
    reply = make_mail(
        subject="Re: Invoice", in_reply_to=parent_id, references=[grandparent_id, parent_id]
    )
    parent = make_mail(
        subject="Invoice",
        message_id=parent_id,
        in_reply_to=grandparent_id,
        references=[grandparent_id],
    )
    grandparent = make_mail(subject="Invoice", message_id=grandparent_id)
    for mail in (reply, parent, grandparent):
        pipeline.send(mail)
    pipeline.wait_routed()
    tickets = pipeline.tickets()
    assert len(tickets) == 1
    inbound = [
        m for m in pipeline.ticket(tickets[0]["ref"])["messages"] if m["direction"] == "inbound"
    ]
    assert len(inbound) == 3


def test_subject_token_threads_a_reply_without_headers(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    pipeline.send(make_mail(subject="Login problem"))
    smtp_sink.wait_for(1)
    ref = pipeline.tickets()[0]["ref"]
    pipeline.send(make_mail(subject=f"Re: [{ref}] Login problem", body="Still broken."))
    pipeline.wait_routed()
    tickets = pipeline.tickets()
    assert len(tickets) == 1
    last = pipeline.ticket(ref)["messages"][-1]
    assert last["decision"]["thread"]["via"] == "subject-token"


@pytest.mark.parametrize(
    "sender, headers, envelope_from",
    [
        ("ana@customer.test", {"Auto-Submitted": "auto-replied"}, None),
        ("ana@customer.test", {"Auto-Submitted": "auto-generated"}, None),
        ("ana@customer.test", {"Precedence": "bulk"}, None),
        ("ana@customer.test", {"Precedence": "junk"}, None),
        ("ana@customer.test", {"Precedence": "list"}, None),
        ("ana@customer.test", {"List-Id": "<news.customer.test>"}, None),
        ("ana@customer.test", {"List-Unsubscribe": "<mailto:leave@customer.test>"}, None),
        ("ana@customer.test", {}, ""),  # MAIL FROM:<> -- a bounce or notification
        ("MAILER-DAEMON@customer.test", {}, None),
        ("postmaster@customer.test", {}, None),
        ("noreply@customer.test", {}, None),
        ("no-reply@shop.test", {}, None),
        ("support@example.com", {}, None),  # our own address: a loop in the making
        ("ana@customer.test", {"X-Loop": "support@example.com"}, None),  # our mail came back
        ("ana@customer.test", {"X-Auto-Response-Suppress": "OOF, AutoReply"}, None),
        ("ana@customer.test", {"X-Autoreply": "yes"}, None),
    ],
)
def test_machines_get_no_acknowledgement(
    pipeline: Pipeline,
    smtp_sink: SmtpSink,
    sender: str,
    headers: dict[str, str],
    envelope_from: str | None,
) -> None:
    mail = make_mail(sender=sender, headers=headers)
    with smtplib.SMTP(pipeline.settings.smtp_host, pipeline.settings.smtp_port) as client:
        client.send_message(mail, from_addr=envelope_from if envelope_from is not None else sender)
    pipeline.wait_routed()
    tickets = pipeline.tickets()
    assert len(tickets) == 1  # the message is still a ticket...
    decision = pipeline.ticket(tickets[0]["ref"])["messages"][0]["decision"]
    assert decision["auto_reply_suppressed"]  # ...with the reason it got no reply
    pipeline.app.sweeper.sweep_once()
    assert smtp_sink.received == []


def test_human_with_auto_submitted_no_is_acknowledged(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    pipeline.send(make_mail(headers={"Auto-Submitted": "no"}))
    assert len(smtp_sink.wait_for(1)) == 1


def test_auto_replies_are_capped_per_sender(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink
) -> None:
    p = Pipeline(
        make_settings(outbound_smtp_url=smtp_sink.url, auto_reply_limit_per_hour=2)
    ).start()
    try:
        for n in range(4):
            p.send(make_mail(subject=f"Question {n}"))
        p.wait_routed()
        assert len(p.tickets()) == 4
        smtp_sink.wait_for(2)
        p.app.sweeper.sweep_once()
        assert len(smtp_sink.received) == 2
        reasons = [
            p.ticket(t["ref"])["messages"][0]["decision"]["auto_reply_suppressed"]
            for t in p.tickets()
        ]
        assert sum(1 for r in reasons if r and "cap" in r) == 2
    finally:
        p.stop()


def test_unknown_domain_is_refused_never_relayed(pipeline: Pipeline) -> None:
    with smtplib.SMTP(pipeline.settings.smtp_host, pipeline.settings.smtp_port) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.send_message(make_mail(to="someone@elsewhere.test"))
    code, text = refused.value.recipients["someone@elsewhere.test"]
    assert code == 550 and b"5.7.1" in text
    assert pipeline.tickets() == []


def test_oversized_message_gets_552(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink
) -> None:
    p = Pipeline(
        make_settings(outbound_smtp_url=smtp_sink.url, max_message_bytes=4096)
    ).start()
    try:
        with smtplib.SMTP(p.settings.smtp_host, p.settings.smtp_port) as client:
            with pytest.raises(smtplib.SMTPResponseException) as error:
                client.send_message(make_mail(body="x" * 10_000))
        assert error.value.smtp_code == 552
        assert p.tickets() == []
    finally:
        p.stop()


# -- bare LF line ends (Postfix's smtpd_forbid_bare_newline = normalize) --------------------------
def _stored_raw(p: Pipeline) -> list[bytes]:
    """The raw bytes of every intake row, oldest first, as the blob store holds them."""
    from tickets.models import IntakeRow

    with p.app.db.read() as session:
        shas = session.query(IntakeRow.raw_sha256).order_by(IntakeRow.id).all()
    assert all(sha for (sha,) in shas), "an intake row without raw bytes"
    return [p.app.blobs.get(str(sha)) for (sha,) in shas]


# One 1,500-byte line: past aiosmtpd's 1,001 and RFC 5321's 1,000, well within our limit.
LONG_LINE = b" ".join(b"A%05d" % n for n in range(250))[:1500]


def _long_line_mail(message_id: str, eol: bytes) -> bytes:
    # Written by hand, not by EmailMessage: its generator would wrap the long line.
    lines = [
        b"From: Ana Customer <ana@customer.test>",
        b"To: support@example.com",
        b"Subject: Long order list",
        b"Message-ID: " + message_id.encode(),
        b"Content-Type: text/plain; charset=utf-8",
        b"",
        b"Hello, here are all my order numbers:",
        LONG_LINE,
        b".a line that starts with a dot",
        b"Thanks, Ana",
    ]
    return eol.join(lines) + eol


def test_bare_lf_mail_with_a_long_line_is_stored_with_crlf_like_its_crlf_twin(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    bare_lf = _long_line_mail(unique_id(), b"\n")
    crlf = _long_line_mail(unique_id(), b"\r\n")
    assert len(LONG_LINE) == 1500
    with smtplib.SMTP(pipeline.settings.smtp_host, pipeline.settings.smtp_port, timeout=30) as client:
        # smtplib sends a bytes message as it is: bare LF on the wire, dot-stuffed after each LF.
        assert client.sendmail("ana@customer.test", ["support@example.com"], bare_lf) == {}
        assert client.sendmail("ana@customer.test", ["support@example.com"], crlf) == {}
    pipeline.wait_for_messages(2 + 2)  # two mails, two acknowledgements
    stored_lf, stored_crlf = _stored_raw(pipeline)
    assert b"\n" not in stored_lf.replace(b"\r\n", b""), "a bare LF was stored"
    # smtplib ends a message that does not end in CRLF with one of its own before ".": so the
    # bare-LF mail gains one empty last line, as it would at any MTA. Otherwise byte for byte
    # the CRLF twin, the leading dot de-stuffed the same.
    lf_id, crlf_id = (
        m.split(b"Message-ID: ")[1].split(b"\r\n")[0] for m in (stored_lf, stored_crlf)
    )
    assert stored_lf.replace(lf_id, crlf_id) == stored_crlf + b"\r\n"
    texts = [pipeline.ticket(t["ref"])["messages"][0] for t in pipeline.tickets()]
    assert {m["subject"] for m in texts} == {"Long order list"}
    assert texts[0]["full_text"] == texts[1]["full_text"]
    assert LONG_LINE.decode() in texts[0]["full_text"]
    assert ".a line that starts with a dot" in texts[0]["full_text"]


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\n.\r\n", b"\r\n.\n"],
    ids=["LF.LF", "LF.CRLF", "CRLF.LF"],
)
def test_a_dot_line_after_or_before_a_bare_lf_does_not_end_data(
    pipeline: Pipeline, smtp_sink: SmtpSink, fake_end: bytes
) -> None:
    """SMTP smuggling: a second mail hidden in the first one's DATA stays text of the first."""
    first = (
        b"From: Ana Customer <ana@customer.test>\r\nTo: support@example.com\r\n"
        b"Subject: Where is my parcel\r\nMessage-ID: " + unique_id().encode() + b"\r\n\r\n"
        b"Hello, my parcel is late." + fake_end
    )
    smuggled = (
        b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<support@example.com>\r\nDATA\r\n"
        b"From: The CEO <ceo@example.com>\r\nTo: support@example.com\r\n"
        b"Subject: Smuggled\r\nMessage-ID: " + unique_id().encode() + b"\r\n\r\n"
        b"Refund everything to the attacker."
    )
    with smtplib.SMTP(pipeline.settings.smtp_host, pipeline.settings.smtp_port, timeout=30) as client:
        client.ehlo()
        assert client.mail("ana@customer.test")[0] == 250
        assert client.rcpt("support@example.com")[0] == 250
        assert client.docmd("DATA")[0] == 354
        client.send(first + smuggled + b"\r\n.\r\n")
        code, reply = client.getreply()
        assert code == 250, reply
        # Had DATA ended early, the server would now answer the smuggled MAIL, RCPT, DATA and
        # second end of data: the next reply would be one of those, not NOOP's.
        assert client.noop() == (250, b"OK")
    pipeline.wait_routed()
    assert len(_stored_raw(pipeline)) == 1
    tickets = pipeline.tickets()
    assert len(tickets) == 1
    message = pipeline.ticket(tickets[0]["ref"])["messages"][0]
    assert message["subject"] == "Where is my parcel"
    assert "Refund everything to the attacker." in message["full_text"]
    assert "MAIL FROM:<ceo@example.com>" in message["full_text"]


def test_a_line_over_the_limit_is_refused_and_the_session_goes_on(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink
) -> None:
    p = Pipeline(make_settings(outbound_smtp_url=smtp_sink.url, smtp_max_line_bytes=2000)).start()
    try:
        too_long = _long_line_mail(unique_id(), b"\n").replace(b"Thanks, Ana", b"x" * 5000)
        with smtplib.SMTP(p.settings.smtp_host, p.settings.smtp_port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPDataError) as error:
                client.sendmail("ana@customer.test", ["support@example.com"], too_long)
            assert error.value.smtp_code == 500
            assert b"longer than 2000 bytes" in error.value.smtp_error
            # The refusal came after DATA, so the connection is still in step for the next mail.
            assert client.sendmail("ana@customer.test", ["support@example.com"],
                                   _long_line_mail(unique_id(), b"\n")) == {}
        p.wait_for_messages(2)
        assert len(p.tickets()) == 1
    finally:
        p.stop()


def _rename_intake_table(p: Pipeline, old: str, new: str) -> None:
    url = p.app.db.engine.url
    if p.app.db.is_sqlite:
        with sqlite3.connect(str(url.database)) as conn:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
    else:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def _store_failure_flow(p: Pipeline, sink: SmtpSink) -> None:
    mail = make_mail()
    _rename_intake_table(p, "intake", "intake_away")
    with smtplib.SMTP(p.settings.smtp_host, p.settings.smtp_port) as client:
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.send_message(mail)
    assert error.value.smtp_code == 451 and b"4.3.0" in error.value.smtp_error
    _rename_intake_table(p, "intake_away", "intake")
    assert p.tickets() == []  # nothing half-written
    p.send(mail)  # the sending server retries later
    sink.wait_for(1)
    assert len(p.tickets()) == 1


def test_store_failure_answers_451_and_the_retry_succeeds(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    _store_failure_flow(pipeline, smtp_sink)


@pytest.mark.postgres
@pytest.mark.redis
def test_store_failure_on_postgres(pg_redis_pipeline: Pipeline, smtp_sink: SmtpSink) -> None:
    _store_failure_flow(pg_redis_pipeline, smtp_sink)


def test_acknowledgement_retried_after_a_temporary_failure(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    from tickets.models import OutboxRow

    smtp_sink.fail_next = 1
    pipeline.app.dispatcher.base_backoff = pipeline.app.dispatcher.base_backoff / 50  # 0.1 s
    pipeline.send(make_mail())
    pipeline.wait_routed()
    mails = smtp_sink.wait_for(1, timeout=30)
    assert len(mails) == 1
    pipeline.wait_until(lambda: _outbox_states(pipeline) == ["sent"], what="the delivery recorded")
    with pipeline.app.db.read() as session:
        row = session.query(OutboxRow).one()
        assert row.state == "sent" and row.attempts == 2
        row_id = row.id
    # A redelivered job for a sent row sends nothing.
    assert pipeline.app.dispatcher.deliver(row_id) == ""
    pipeline.app.sweeper.sweep_once()
    assert len(smtp_sink.received) == 1


def test_message_logged_before_a_restart_is_routed_after_it(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink
) -> None:
    """The embedded broker loses its queue on restart; the intake log and the sweeper do not."""
    settings = make_settings(outbound_smtp_url=smtp_sink.url)
    first = Pipeline(settings).start(("smtp",))  # accepts mail, but no worker runs
    first.send(make_mail())
    first.stop()
    second = Pipeline(settings).start(("worker", "sweeper"))
    try:
        smtp_sink.wait_for(1, timeout=30)
        assert len(second.tickets()) == 1
    finally:
        second.stop()


def _burst(p: Pipeline, threads: int, per_thread: int) -> list[Any]:
    """Several messages of each new thread, all referencing a root nobody has seen, at once."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    mails = []
    for t in range(threads):
        root = unique_id()
        for n in range(per_thread):
            mails.append(
                make_mail(
                    subject=f"Thread {t}",
                    in_reply_to=root,
                    references=[root],
                    sender=f"c{t}@customer.test",
                )
            )
    random.Random(7).shuffle(mails)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(p.send, mails))
    return mails


@pytest.mark.postgres
@pytest.mark.redis
def test_concurrent_messages_of_one_new_thread_end_on_one_ticket(
    pg_redis_pipeline: Pipeline,
) -> None:
    _burst(pg_redis_pipeline, threads=15, per_thread=4)
    pg_redis_pipeline.wait_routed(timeout=60)
    tickets = pg_redis_pipeline.tickets()
    assert len(tickets) == 15
    assert sorted(t["subject"] for t in tickets) == sorted(f"Thread {t}" for t in range(15))
    assert all(
        sum(
            1 for m in pg_redis_pipeline.ticket(t["ref"])["messages"] if m["direction"] == "inbound"
        )
        == 4
        for t in tickets
    )


def test_ticket_number_from_a_stranger_opens_a_linked_ticket(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    pipeline.send(make_mail(subject="Account locked"))
    smtp_sink.wait_for(1)
    ref = pipeline.tickets()[0]["ref"]
    pipeline.send(
        make_mail(sender="mallory@elsewhere.test", subject=f"[{ref}] give me the account")
    )
    pipeline.wait_routed()
    tickets = {t["ref"]: t for t in pipeline.tickets()}
    assert len(tickets) == 2
    other = next(r for r in tickets if r != ref)
    assert pipeline.ticket(other)["facts"]["linked_ticket"] == ref
    assert tickets[ref]["message_count"] == 2  # untouched: the customer's mail and our ack


def test_ticket_number_from_a_stranger_follows_up_when_configured(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink
) -> None:
    p = Pipeline(
        make_settings(outbound_smtp_url=smtp_sink.url, foreign_token_policy="follow_up")
    ).start()
    try:
        p.send(make_mail(subject="Account locked"))
        smtp_sink.wait_for(1)
        ref = p.tickets()[0]["ref"]
        p.send(
            make_mail(sender="colleague@customer-two.test", subject=f"Re: [{ref}] Account locked")
        )
        p.wait_routed()
        assert len(p.tickets()) == 1
    finally:
        p.stop()


def test_bounce_of_our_acknowledgement_marks_it_failed_on_its_ticket(
    pipeline: Pipeline, smtp_sink: SmtpSink
) -> None:
    from tickets.models import OutboxRow

    pipeline.send(make_mail(sender="gone@customer.test"))
    ack = smtp_sink.wait_for(1)[0].message
    ref = pipeline.tickets()[0]["ref"]
    pipeline.wait_until(lambda: _outbox_states(pipeline) == ["sent"], what="ack recorded as sent")

    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n"
        "To: support@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {unique_id('mx.customer.test')}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\n"
        "Your message could not be delivered to gone@customer.test.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.test\r\n\r\n"
        "Final-Recipient: rfc822; gone@customer.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Message-ID: {ack['Message-ID']}\r\nSubject: {ack['Subject']}\r\n\r\n(original message)\r\n"
        "--B--\r\n"
    )
    with smtplib.SMTP(pipeline.settings.smtp_host, pipeline.settings.smtp_port) as client:
        client.sendmail("", ["support@example.com"], dsn.encode())
    pipeline.wait_routed()
    assert [t["ref"] for t in pipeline.tickets()] == [ref]
    assert _outbox_states(pipeline) == ["failed"]
    with pipeline.app.db.read() as session:
        assert "bounced" in (session.query(OutboxRow).one().last_error or "")
    assert pipeline.ticket(ref)["status"] == "new"  # a bounce is not the customer answering


def _outbox_states(p: Pipeline) -> list[str]:
    from tickets.models import OutboxRow

    with p.app.db.read() as session:
        return [row.state for row in session.query(OutboxRow).order_by(OutboxRow.id)]


def test_rule_notify_mails_the_named_people(pipeline: Pipeline, smtp_sink: SmtpSink) -> None:
    # config/routing.yaml: VIP customers raise priority and notify cs-lead@example.com
    pipeline.send(make_mail(sender="Dana Ceo <ceo@bigco.example>", subject="Contract renewal"))
    mails = smtp_sink.wait_for(2)
    by_recipient = {m.rcpt_tos[0]: m.message for m in mails}
    ref = pipeline.tickets()[0]["ref"]
    note = by_recipient["cs-lead@example.com"]
    assert note["Subject"] == f"[{ref}] New ticket: Contract renewal"
    assert "ceo" in note.get_body(("plain",)).get_content().lower()
    assert by_recipient["ceo@bigco.example"]["Auto-Submitted"] == "auto-replied"
    assert pipeline.tickets()[0]["priority"] == "high"
