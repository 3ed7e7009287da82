"""Email fidelity (issue 9): classes of real-world mail that other parsers read and we did not.

Every message here is written for this file, as bytes, in the shape the class takes in the wild.
Assertions are on what a user sees: the sender, the subject, the ticket text, attachment names
and bytes, and what a receiving mail server gets.
"""

from __future__ import annotations

import base64
import binascii
import smtplib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_string, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from config.settings import Settings
from intake.email.details import EmailDetails
from intake.blobs import FileBlobStore
from intake.email import parse_email
from intake.envelope import Envelope
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import Pipeline
from workers.errors import PermanentDeliveryError
from workers.outbox import OutboxMessage
from workers.senders.email import FileDropSender, SmtpSender

RECEIVED = datetime(2025, 6, 2, 8, 30, tzinfo=UTC)


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs", fsync=False)


def parse(raw: bytes, blobs: FileBlobStore) -> Envelope:
    return parse_email(raw, blobs=blobs, received_at=RECEIVED)


def crlf(raw: bytes) -> bytes:
    """Mail as it travels: CRLF line ends (tests are written with LF for readability)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def attachment(env: Envelope, blobs: FileBlobStore, name: str) -> bytes:
    found = [a for a in env.attachments if a.filename == name]
    assert found, f"no attachment {name!r} in {[a.filename for a in env.attachments]}"
    return blobs.get(found[0].sha256)


# -- 1. raw 8-bit bytes inside an RFC 2047 encoded word ------------------------------------------
@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("iso-8859-1", "Frösche im Teich"),
        ("iso-8859-2", "Łódź zażółć"),
        ("windows-1251", "Привет мир"),
        ("koi8-r", "Счёт оплачен"),
    ],
)
def test_raw_byte_inside_encoded_word_is_read_in_the_words_charset(
    blobs: FileBlobStore, charset: str, text: str
) -> None:
    # Eudora-style: the word names its charset but carries the byte raw instead of "=F6".
    word = b"=?" + charset.encode() + b"?Q?" + text.replace(" ", "_").encode(charset) + b"?="
    raw = (
        b"From: " + word + b" <frog@pond.example>\n"
        b"To: support@omnidesk.test\n"
        b"Subject: Re: " + word + b"\n"
        b"Message-ID: <eudora-1@pond.example>\n\nThanks.\n"
    )
    env = parse(raw, blobs)
    assert env.subject == f"Re: {text}"
    assert env.sender.name == text
    assert env.sender.address == "frog@pond.example"


# -- 2. a boundary parameter folded inside its quotes --------------------------------------------
@pytest.mark.parametrize(
    ("declared", "boundary"),
    [
        # A line break and an indent inserted inside the value: the boundary has neither.
        (b'"----=_NextPart\n _000_0012_01DA1B2C.3D4E5F60"', b"----=_NextPart_000_0012_01DA1B2C.3D4E5F60"),
        (b'"----=_NextPart_000\n\t_0012_01DA"', b"----=_NextPart_000_0012_01DA"),
        # Folded at a space the boundary really has.
        (b'"Apple-Mail part\n 7F3A2C"', b"Apple-Mail part 7F3A2C"),
    ],
)
def test_boundary_folded_inside_its_quotes_still_splits_the_parts(
    blobs: FileBlobStore, declared: bytes, boundary: bytes
) -> None:
    report = b"%PDF-1.4 quarterly figures\n"
    raw = crlf(
        b"From: Lena <lena@firm.example>\n"
        b"To: support@omnidesk.test\n"
        b"Subject: Figures\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed;\n\tboundary=" + declared + b"\n\n"
        b"This is a multi-part message in MIME format.\n\n"
        b"--" + boundary + b"\n"
        b"Content-Type: text/plain; charset=utf-8\n\n"
        b"Please find the figures attached.\n\n"
        b"--" + boundary + b"\n"
        b"Content-Type: application/pdf; name=\"figures.pdf\"\n"
        b"Content-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=\"figures.pdf\"\n\n"
        + base64.encodebytes(report)
        + b"\n--" + boundary + b"--\n"
    )
    env = parse(raw, blobs)
    assert env.full_text == "Please find the figures attached."
    assert attachment(env, blobs, "figures.pdf") == report


def test_folded_boundary_of_a_nested_multipart(blobs: FileBlobStore) -> None:
    raw = crlf(
        b"From: lena@firm.example\nTo: support@omnidesk.test\nSubject: nested\n"
        b"Content-Type: multipart/mixed; boundary=\"outer\"\n\n"
        b"--outer\n"
        b"Content-Type: multipart/alternative; boundary=\"=_alt\n _42\"\n\n"
        b"--=_alt_42\nContent-Type: text/plain\n\nPlain words\n"
        b"--=_alt_42\nContent-Type: text/html\n\n<p>Plain words</p>\n"
        b"--=_alt_42--\n"
        b"--outer\nContent-Type: text/csv; name=\"a.csv\"\n\nx,y\n1,2\n"
        b"--outer--\n"
    )
    env = parse(raw, blobs)
    assert env.full_text == "Plain words"
    assert "--=_alt" not in env.full_text and "Content-Type" not in env.full_text
    assert attachment(env, blobs, "a.csv") == b"x,y\r\n1,2"


# -- 3. raw UTF-8 header with an invalid byte ------------------------------------------------------
def test_raw_utf8_header_with_a_bad_byte_stays_utf8(blobs: FileBlobStore) -> None:
    # A mailer cut the name at a byte limit, mid-character, then added the extension.
    name = "Картинка с очень длинным названием".encode()
    cut_name = name[:-1] + b".jpg"
    subject = "Ответ: документы для заявки ".encode() + b"\xe9"  # one stray Latin-1 byte
    raw = (
        b"From: ivan@mail.example\nTo: support@omnidesk.test\nSubject: " + subject + b"\n"
        b"Content-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain; charset=utf-8\n\n" + "Смотрите вложение.\n".encode() +
        b"--b\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="' + cut_name + b'"\n\n'
        + base64.encodebytes(b"\xff\xd8\xff\xe0 jpeg") + b"--b--\n"
    )
    env = parse(raw, blobs)
    assert env.subject == "Ответ: документы для заявки \ufffd"
    assert [a.filename for a in env.attachments] == [name.decode()[:-1] + "\ufffd.jpg"]


# -- 4. the only text of a message in a named inline part ------------------------------------------
@pytest.mark.parametrize("disposition", [b'inline; filename="note.txt"', None])
def test_named_inline_text_that_is_the_only_text_is_the_body(
    blobs: FileBlobStore, disposition: bytes | None
) -> None:
    headers = b"Content-Type: text/plain; charset=utf-8; name=\"note.txt\"\n"
    if disposition:
        headers += b"Content-Disposition: " + disposition + b"\n"
    raw = (
        b"From: phone@mobile.example\nTo: support@omnidesk.test\nSubject: from my phone\n"
        b"Content-Type: multipart/mixed; boundary=zz\n\n"
        b"--zz\n" + headers + b"\nThe app crashes when I open settings.\n"
        b"--zz\nContent-Type: image/png\nContent-Disposition: inline; filename=\"shot.png\"\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(b"\x89PNG shot") + b"--zz--\n"
    )
    env = parse(raw, blobs)
    assert env.text == "The app crashes when I open settings."
    assert attachment(env, blobs, "note.txt") == b"The app crashes when I open settings."
    assert attachment(env, blobs, "shot.png") == b"\x89PNG shot"


def test_named_inline_text_after_the_body_is_only_a_file(blobs: FileBlobStore) -> None:
    raw = (
        b"From: dev@corp.example\nTo: support@omnidesk.test\nSubject: log\n"
        b"Content-Type: multipart/mixed; boundary=zz\n\n"
        b"--zz\nContent-Type: text/plain\n\nLog attached.\n"
        b"--zz\nContent-Type: text/plain; name=\"server.log\"\nContent-Disposition: inline\n\n"
        b"ERROR boom\n--zz--\n"
    )
    env = parse(raw, blobs)
    assert env.full_text == "Log attached."
    assert attachment(env, blobs, "server.log") == b"ERROR boom"


# -- 5. no empty line between a header block and its body ----------------------------------------
def test_message_headers_running_into_the_first_boundary(blobs: FileBlobStore) -> None:
    raw = crlf(
        b"From: shop@store.example\nTo: support@omnidesk.test\nSubject: Order 5531\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: multipart/alternative; boundary=\"=_mx\"\n"
        b"--=_mx\nContent-Type: text/plain; charset=utf-8\n\nYour order 5531 shipped.\n"
        b"--=_mx\nContent-Type: text/html; charset=utf-8\n\n"
        b"<html><body><p>Your order 5531 shipped.</p></body></html>\n"
        b"--=_mx--\n"
    )
    env = parse(raw, blobs)
    assert env.full_text == "Your order 5531 shipped."
    assert env.subject == "Order 5531" and env.sender.address == "shop@store.example"
    assert env.html is not None and "order 5531 shipped" in env.html


def test_part_headers_running_into_the_part_body(blobs: FileBlobStore) -> None:
    raw = crlf(
        b"From: shop@store.example\nTo: support@omnidesk.test\nSubject: Invoice\n"
        b"Content-Type: multipart/mixed; boundary=\"p1\"\n\n"
        b"--p1\nContent-Type: text/html; charset=utf-8\n"
        b"<html><body><p>Invoice 77 is attached.</p></body></html>\n"
        b"--p1\nContent-Type: text/csv; name=\"inv.csv\"\nContent-Transfer-Encoding: base64\n"
        + base64.encodebytes(b"item,qty\npen,2\n")
        + b"--p1--\n"
    )
    env = parse(raw, blobs)
    assert env.full_text == "Invoice 77 is attached."
    assert "<html" not in env.full_text
    assert attachment(env, blobs, "inv.csv") == b"item,qty\npen,2\n"


# -- 6. obsolete header syntax (RFC 5322 §4) -------------------------------------------------------
def test_obsolete_header_syntax_is_read(blobs: FileBlobStore) -> None:
    raw = crlf(
        b"From  : Ola Q. Nordmann <ola(home).nordmann@fjord(sea).  example>\n"
        b"To    : Kari Hansen\n"
        b"   \n"  # obs-FWS: a fold with nothing on the line
        b"        <@relay.example,@hub.example:kari@ice.example>, ,\n"
        b"        support@omnidesk.test\n"
        b"Subject     : Fjord   tour\n"
        b"Date  : Mon, 2 Jun 25 10:15:00 EST\n"
        b"Message-ID  : <7781   @   host(box)  .fjord .example>\n"
        b"\n"
        b"Is the tour on Friday?\n"
    )
    env = parse(raw, blobs)
    assert env.sender.address == "ola.nordmann@fjord.example"
    assert env.sender.name == "Ola Q. Nordmann"
    assert [p.address for p in EmailDetails.of(env).to] == ["kari@ice.example", "support@omnidesk.test"]
    assert env.subject == "Fjord   tour"
    assert env.external_id == "<7781@host.fjord.example>"
    assert env.text == "Is the tour on Friday?"


def test_obsolete_first_field_is_not_mistaken_for_an_mbox_line(blobs: FileBlobStore) -> None:
    raw = b"From : old@host.example\nSubject: hi\n\nhello\n"
    env = parse(raw, blobs)
    assert env.sender.address == "old@host.example"
    assert env.text == "hello"


# -- 7. UTF-16 by declared charset, and no NUL anywhere --------------------------------------------
@pytest.mark.parametrize("charset", ["utf-16le", "utf-16be", "UTF-16LE"])
@pytest.mark.parametrize(
    "text",
    [
        "Hello, the printer on floor 3 is jammed.\r\n",  # every byte ASCII or NUL
        "Hello, the printer on floor 3 is jammed. Ünïcode too.\r\n",
    ],
)
def test_utf16_without_bom_is_decoded_by_its_declared_charset(
    blobs: FileBlobStore, charset: str, text: str
) -> None:
    codec = charset.lower().replace("utf-16", "utf-16-")
    raw = (
        b"From: printer@office.example\nTo: support@omnidesk.test\nSubject: jam\n"
        b"Content-Type: text/plain; charset=" + charset.encode() + b"\n"
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(text.encode(codec))
    )
    env = parse(raw, blobs)
    assert env.full_text == text.strip()


NUL_MAIL = crlf(
    b"From: Nul\x00 Person <nul@bytes.example>\n"
    b"To: support@example.com\n"
    b"Subject: zero\x00 byte\n"
    b"X-Custom: a\x00b\n"
    b"Message-ID: <nul-UNIQUE@bytes.example>\n"
    b"Content-Type: multipart/mixed; boundary=nb\n\n"
    b"--nb\nContent-Type: text/plain; charset=us-ascii\n\nbroken\x00 text\n"
    b"--nb\nContent-Type: text/html; charset=utf-8\n\n<p>also\x00 here</p>\n"
    b"--nb\nContent-Type: application/x-thing\x00; name=\"da\x00ta.bin\"\n"
    b"Content-ID: <c\x00id@bytes.example>\n"
    b"Content-Disposition: attachment\n\n\x00\x01\x02\n"
    b"--nb--\n"
)


def _no_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_no_nul(k) and _no_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_no_nul(v) for v in value)
    return True


def test_no_decoded_text_keeps_nul(blobs: FileBlobStore) -> None:
    env = parse(NUL_MAIL, blobs)
    assert env.sender.name == "Nul Person"
    assert env.subject == "zero byte"
    assert env.full_text == "broken text"
    assert env.headers["x-custom"] == "ab"
    assert _no_nul(env.model_dump(mode="json"))
    # The attachment's bytes are data, not text: they are kept exactly.
    assert blobs.get(env.attachments[0].sha256) == b"\x00\x01\x02"


@pytest.fixture
def pg_pipeline(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink, postgres_url: str
) -> Iterator[Pipeline]:
    p = Pipeline(make_settings(outbound_smtp_url=smtp_sink.url, database_url=postgres_url)).start()
    yield p
    p.stop()


@pytest.mark.postgres
def test_mail_with_nul_bytes_is_stored_on_postgres(pg_pipeline: Pipeline, smtp_sink: SmtpSink) -> None:
    utf16 = "UTF-16 text with its NULs".encode("utf-16-le")
    raw = NUL_MAIL.replace(b"UNIQUE", uuid.uuid4().hex.encode()).replace(
        b"broken\x00 text",
        b"broken\x00 text\r\n--nb\r\nContent-Type: text/plain; charset=utf-16le\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(utf16),
    )
    with smtplib.SMTP(pg_pipeline.settings.smtp_host, pg_pipeline.settings.smtp_port, timeout=30) as client:
        client.sendmail("nul@bytes.example", ["support@example.com"], raw)
    pg_pipeline.wait_for_messages(1)
    ticket = pg_pipeline.ticket(pg_pipeline.tickets()[0]["ref"])
    message = ticket["messages"][0]
    assert message["subject"] == "zero byte"
    assert "broken text" in message["full_text"]
    assert "UTF-16 text with its NULs" in message["full_text"]
    assert _no_nul(message)


# -- 8. acknowledgements to internationalised addresses (RFC 6531/6532) ---------------------------
def _ack(to: str, name: str = "Jöhn Döe") -> OutboxMessage:
    payload = {"from": "support@example.com", "to": to, "to_name": name,
               "subject": "[OD-9] Re: Bestellung", "text": "We got your message.", "ticket_ref": "OD-9"}
    return OutboxMessage(id=9, channel="email", kind="ack", recipient=to,
                         idempotency_key=f"<ack-{uuid.uuid4().hex}@example.com>", payload=payload, attempts=1)


def _sink(*, smtputf8: bool) -> Iterator[SmtpSink]:
    sink = SmtpSink()
    controller = Controller(sink, hostname=sink.host, port=sink.port, decode_data=False,
                            enable_SMTPUTF8=smtputf8)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def utf8_sink() -> Iterator[SmtpSink]:
    yield from _sink(smtputf8=True)


@pytest.fixture
def ascii_sink() -> Iterator[SmtpSink]:
    """A relay that does not advertise SMTPUTF8 (aiosmtpd's Controller does by default)."""
    yield from _sink(smtputf8=False)


def test_utf8_address_goes_out_with_smtputf8(utf8_sink: SmtpSink) -> None:
    SmtpSender(utf8_sink.url).send(_ack("jdöe@mächine.example"))
    mail = utf8_sink.wait_for(1)[0]
    local, _, domain = mail.rcpt_tos[0].rpartition("@")
    assert local == "jdöe" and domain.encode().decode("idna") == "mächine.example"
    header = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert "jdöe@".encode() in header  # raw UTF-8 in the header, as RFC 6532 has it
    to = message_from_string(mail.raw.decode("utf-8"), policy=policy.default)["To"].addresses[0]
    assert to.display_name == "Jöhn Döe" and to.username == "jdöe"


def test_utf8_address_without_smtputf8_fails_permanently_and_says_why(ascii_sink: SmtpSink) -> None:
    sender = SmtpSender(ascii_sink.url)
    with pytest.raises(PermanentDeliveryError, match="does not offer SMTPUTF8.*jdöe@"):
        sender.send(_ack("jdöe@mächine.example"))
    # The same connection still carries mail that needs no extension.
    sender.send(_ack("ana@customer.example"))
    assert [m.rcpt_tos for m in ascii_sink.wait_for(1)] == [("ana@customer.example",)]


def test_non_ascii_domain_alone_needs_no_smtputf8(ascii_sink: SmtpSink) -> None:
    SmtpSender(ascii_sink.url).send(_ack("ana@bücher.example"))
    mail = ascii_sink.wait_for(1)[0]
    assert mail.rcpt_tos == ("ana@xn--bcher-kva.example",)
    assert mail.raw.isascii()
    assert mail.message["To"].addresses[0].domain.encode().decode("idna") == "bücher.example"


@pytest.mark.parametrize(
    "address",
    ["jdöe@mächine.example", "ana@bücher.example", '"john doe"@example.com', "über@例え.jp",
     "j\ufffd@x.example", "mailer-daemon", "a@b@c"],
)
def test_no_address_the_intake_accepts_crashes_a_sender(
    tmp_path: Path, utf8_sink: SmtpSink, ascii_sink: SmtpSink, address: str
) -> None:
    # A clear, final PermanentDeliveryError is an answer; any other exception is a crash.
    senders = (FileDropSender(tmp_path / "drop"), SmtpSender(utf8_sink.url), SmtpSender(ascii_sink.url))
    for sender in senders:
        try:
            sender.send(_ack(address))
        except PermanentDeliveryError:
            pass


# -- missing comma between addresses ----------------------------------------------------------------
def test_addresses_without_a_comma_take_the_first_as_sender(blobs: FileBlobStore) -> None:
    raw = (
        b"From: first@x.example second@y.example\n"
        b"To: support@omnidesk.test boss@omnidesk.test\n"
        b"Subject: two\n\nhi\n"
    )
    env = parse(raw, blobs)
    assert env.sender.address == "first@x.example"
    assert [p.address for p in EmailDetails.of(env).to] == ["support@omnidesk.test", "boss@omnidesk.test"]
    assert env.headers["from"] == "first@x.example second@y.example"


# -- uuencoded files in a plain-text body -----------------------------------------------------------
def _uuencode(data: bytes) -> bytes:
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return b"".join(lines) + b"`\n"


def test_uuencoded_files_in_text_become_attachments(blobs: FileBlobStore) -> None:
    report = bytes(range(256)) * 3
    notes = b"line one\nline two\n"
    raw = (
        b"From: cron@db.example\nTo: support@omnidesk.test\nSubject: nightly\n\n"
        b"Nightly export below.\n\n"
        b"begin 644 export.bin\n" + _uuencode(report) + b"end\n"
        b"\nAnd the notes:\n"
        b"begin 600 notes.txt\n" + _uuencode(notes) + b"end\n"
        b"-- \ncron\n"
    )
    env = parse(raw, blobs)
    assert attachment(env, blobs, "export.bin") == report
    assert attachment(env, blobs, "notes.txt") == notes
    assert env.text.startswith("Nightly export below.")
    assert "And the notes:" in env.full_text


def test_text_that_only_looks_like_uuencode_stays(blobs: FileBlobStore) -> None:
    raw = b"From: a@b.example\nSubject: s\n\nbegin 644 plan.txt\nthis is not encoded ~~~~\nend\n"
    env = parse(raw, blobs)
    assert "this is not encoded" in env.full_text
    assert env.attachments == ()
