"""Outbound email as a receiving mail system sees it: headers, parts, attachments, no injection,
and the SMTP conversation against a real (authenticating) aiosmtpd server."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from intake.blobs import FileBlobStore
from tests.peers import free_port
from tests.peers.smtp_sink import SmtpSink
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError
from workers.outbox import OutboxMessage
from workers.senders.email import SmtpSender, compose_email


def _message(**payload: Any) -> OutboxMessage:
    base: dict[str, Any] = {
        "from": "support@example.com",
        "to": "ana@customer.test",
        "to_name": "Ana",
        "subject": "[OD-7] Re: Parcel",
        "text": "Hello Ana,\n\nwe are on it.\n\nThe team",
        "in_reply_to": "<orig@customer.test>",
        "references": ["<root@customer.test>", "<orig@customer.test>"],
        "ticket_ref": "OD-7",
    }
    base.update(payload)
    return OutboxMessage(id=1, channel="email", kind="reply", recipient=str(base["to"]),
                         idempotency_key="<reply-1@example.com>", payload=base, attempts=1)


def _parsed(message: OutboxMessage, blobs: FileBlobStore | None = None) -> EmailMessage:
    parsed = message_from_bytes(compose_email(message, blobs).raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_non_ascii_names_and_subjects_are_encoded() -> None:
    mail = _parsed(_message(to_name="Zoë Ångström", subject="[OD-7] Re: Paket beschädigt"))
    assert mail["Subject"] == "[OD-7] Re: Paket beschädigt"
    assert mail["To"].addresses[0].display_name == "Zoë Ångström"
    assert compose_email(_message(subject="Grüße"), None).raw.isascii()


def test_reply_has_threading_headers_text_and_html() -> None:
    mail = _parsed(_message())
    assert mail["Message-ID"] == "<reply-1@example.com>"
    assert mail["In-Reply-To"] == "<orig@customer.test>"
    assert mail["References"] == "<root@customer.test> <orig@customer.test>"
    assert mail["Subject"] == "[OD-7] Re: Parcel"
    assert mail["X-Loop"] == "support@example.com"
    assert mail.get_body(("plain",)).get_content().startswith("Hello Ana,")
    html = mail.get_body(("html",)).get_content()
    assert "<p>Hello Ana,</p>" in html and "we are on it." in html


def test_customer_text_cannot_inject_headers() -> None:
    raw = compose_email(_message(
        subject="Hi\r\nBcc: victim@evil.test",
        to_name="Ana\nBcc: victim@evil.test",
        text="<script>alert(1)</script>",
    ), None).raw.decode()
    mail = message_from_bytes(raw.encode(), policy=policy.default)
    header_block = raw.split("\n\n", 1)[0]
    assert "\nBcc:" not in header_block and "\r\nBcc:" not in header_block
    assert mail["Bcc"] is None
    assert "<script>" not in mail.get_body(("html",)).get_content()


def test_attachments_come_from_the_blob_store(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    digest = blobs.put(b"%PDF-1.4 invoice")
    mail = _parsed(_message(attachments=[
        {"sha256": digest, "filename": "invoice.pdf", "content_type": "application/pdf"}
    ]), blobs)
    assert mail.get_body(("plain",)).get_content().startswith("Hello Ana,")
    parts = list(mail.iter_attachments())
    assert len(parts) == 1
    assert parts[0].get_filename() == "invoice.pdf"
    assert parts[0].get_content() == b"%PDF-1.4 invoice"


def test_bad_recipient_address_is_a_permanent_failure() -> None:
    with pytest.raises(PermanentDeliveryError):
        compose_email(_message(to="not-an-address"))


@pytest.fixture
def auth_server() -> Iterator[SmtpSink]:
    sink = SmtpSink()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = auth_data.login == b"mailer" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)

    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, authenticator=authenticate,
                            auth_require_tls=False, decode_data=False)
    controller.start()
    yield sink
    controller.stop()


def test_sends_through_an_authenticating_server(auth_server: SmtpSink) -> None:
    sender = SmtpSender(f"smtp://mailer:s3cret@127.0.0.1:{auth_server.port}")
    for n in range(3):  # one connection, reused
        assert sender.send(_message()) == "<reply-1@example.com>"
    mails = auth_server.wait_for(3)
    assert mails[0].rcpt_tos == ("ana@customer.test",)
    assert mails[0].mail_from == "support@example.com"
    assert mails[0].message["Message-ID"] == "<reply-1@example.com>"


def test_acknowledgement_goes_out_with_empty_envelope_sender(smtp_sink: SmtpSink) -> None:
    ack = _message()
    ack = OutboxMessage(**{**ack.__dict__, "kind": "ack"})
    SmtpSender(smtp_sink.url).send(ack)
    assert smtp_sink.wait_for(1)[0].mail_from in ("", "<>")


def test_wrong_password_is_temporary_and_says_what_to_check(auth_server: SmtpSink) -> None:
    sender = SmtpSender(f"smtp://mailer:wrong@127.0.0.1:{auth_server.port}")
    with pytest.raises(TemporaryDeliveryError, match="check the outbound URL"):
        sender.send(_message())


def test_server_down_is_temporary() -> None:
    with pytest.raises(TemporaryDeliveryError):
        SmtpSender(f"smtp://127.0.0.1:{free_port()}", timeout=2).send(_message())


def test_temporary_refusal_and_reconnect_after_the_server_restarts(smtp_sink: SmtpSink) -> None:
    sender = SmtpSender(smtp_sink.url)
    sender.send(_message())
    smtp_sink.fail_next = 1
    with pytest.raises(TemporaryDeliveryError, match="451"):
        sender.send(_message())
    smtp_sink.stop()  # the server drops the pooled connection...
    smtp_sink.start()  # ...and comes back on the same port
    sender.send(_message())
    assert len(smtp_sink.wait_for(2)) == 2
