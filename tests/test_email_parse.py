"""parse_email and its helpers, on mails written for these tests (tests/fixtures/email/, inline)."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from intake.blobs import FileBlobStore
from intake.email import (
    ParseLimits,
    canonical_message_id,
    decode_header_value,
    extract_message_ids,
    find_ticket_refs,
    html_to_text,
    parse_email,
    sanitize_html,
)
from intake.email.headers import decode_bytes
from intake.envelope import Envelope
from intake.errors import IntakeUnavailable, UnparseableMessage
from intake.email.details import EmailDetails, automated_reason

FIXTURES = Path(__file__).parent / "fixtures" / "email"
RECEIVED = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)


@pytest.fixture

def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs", fsync=False)


def parse(raw: bytes, blobs: FileBlobStore, **kwargs: object) -> Envelope:
    return parse_email(raw, blobs=blobs, received_at=RECEIVED, **kwargs)  # type: ignore[arg-type]


def mail(headers: str, body: str = "Hello\n", *, charset: str = "utf-8") -> bytes:
    """A small mail: header lines as written (LF), an empty line, the body."""
    return (headers.strip("\n") + "\n\n" + body).encode(charset)


BASIC = """\
From: "Ana Lima" <ana@customer.example>
To: Support <support@omnidesk.test>, sales@omnidesk.test
Cc: boss@customer.example
Reply-To: <ana.private@customer.example>
Subject: [OD-1042] Re: Printer broken
Message-ID: <CAB123.456@mail.customer.example>
In-Reply-To: <od-1042.1@omnidesk.test>
References: <od-1042.0@omnidesk.test>
 <od-1042.1@omnidesk.test>
Date: Tue, 5 Mar 2024 09:59:00 +0100
"""


# -- the basic contract ---------------------------------------------------------------------
def test_basic_fields(blobs: FileBlobStore) -> None:
    raw = mail(
        BASIC, "It still does not print.\n\nOn Mon, 4 Mar 2024, Support wrote:\n> Try again\n"
    )
    env = parse(raw, blobs)
    assert env.channel == "email"
    assert env.sender.address == "ana@customer.example" and env.sender.name == "Ana Lima"
    assert [p.address for p in EmailDetails.of(env).to] == ["support@omnidesk.test", "sales@omnidesk.test"]
    assert [p.address for p in EmailDetails.of(env).cc] == ["boss@customer.example"]
    assert [p.address for p in env.recipients] == [
        "support@omnidesk.test",
        "sales@omnidesk.test",
        "boss@customer.example",
    ]
    assert env.subject == "[OD-1042] Re: Printer broken"
    assert env.text == "It still does not print."
    assert "> Try again" in env.full_text
    assert env.external_id == "<CAB123.456@mail.customer.example>"
    assert EmailDetails.of(env).message_id == env.external_id
    assert EmailDetails.of(env).in_reply_to == ("<od-1042.1@omnidesk.test>",)
    assert EmailDetails.of(env).references == ("<od-1042.0@omnidesk.test>", "<od-1042.1@omnidesk.test>")
    assert env.ticket_refs == ("OD-1042",)
    assert env.headers["reply-to"] == "<ana.private@customer.example>"
    assert env.received_at == RECEIVED
    assert env.raw_ref == hashlib.sha256(raw).hexdigest() and blobs.get(env.raw_ref) == raw
    assert env.html is None and env.attachments == ()
    assert _automated(env) is None


def test_smtp_recipients_win_over_headers(blobs: FileBlobStore) -> None:
    env = parse(mail(BASIC), blobs, recipients=["help@omnidesk.test"])
    assert [p.address for p in env.recipients] == ["help@omnidesk.test"]
    assert [p.address for p in EmailDetails.of(env).to] == ["support@omnidesk.test", "sales@omnidesk.test"]


def test_ticket_prefix_is_configurable(blobs: FileBlobStore) -> None:
    env = parse(mail("From: a@b.example\nSubject: Re: [HELP-7] and HELP-9, not OD-1"), blobs,
                ticket_prefix="HELP")  # fmt: skip
    assert env.ticket_refs == ("HELP-7", "HELP-9")


@pytest.mark.parametrize(
    "message_id", ["", "Message-ID:\n", "Message-ID: not an id\n", "Message-ID: <no-at-sign>\n"]
)
def test_missing_or_invalid_message_id_gives_hash_id(blobs: FileBlobStore, message_id: str) -> None:
    raw = mail(f"From: a@b.example\n{message_id}Subject: x")
    env = parse(raw, blobs)
    assert env.external_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert EmailDetails.of(env).message_id is None


def test_message_id_without_brackets_is_canonicalised(blobs: FileBlobStore) -> None:
    env = parse(mail("From: a@b.example\nMessage-Id: 20180802145828.58E7@mail.example.cz"), blobs)
    assert env.external_id == "<20180802145828.58E7@mail.example.cz>"


def test_naive_received_at_is_a_programming_error(blobs: FileBlobStore) -> None:
    with pytest.raises(ValueError, match="timezone"):
        parse_email(mail(BASIC), blobs=blobs, received_at=datetime(2024, 1, 1))


def test_received_at_is_normalised_to_utc(blobs: FileBlobStore) -> None:
    local = datetime(2024, 3, 5, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    env = parse_email(mail(BASIC), blobs=blobs, received_at=local)
    assert env.received_at == RECEIVED and env.received_at.tzinfo == UTC


# -- headers: encodings, scripts, broken input -----------------------------------------------
@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "Grüße aus Köln"),
        ("=?ISO-8859-1?Q?Caf=E9?= =?ISO-8859-1?Q?_cr=E8me?=", "Café crème"),
        ("=?utf-8?b?44OX44Oq44Oz44K/44O844GM5YuV44GL44Gq44GE?=", "プリンターが動かない"),
        ("=?koi8-r?b?8NLJztTF0iDOxSDSwcLP1MHF1A==?=", "Принтер не работает"),
        ("=?gb2312?b?tPLTobv6srvE3Mq508M=?=", "打印机不能使用"),
        ("=?iso-8859-7?q?=C5=EA=F4=F5=F0=F9=F4=DE=F2?=", "Εκτυπωτής"),
        ("=?windows-1256?b?x+HYx8jayQ==?=", "الطابعة"),
        # one character split across two encoded words (a UTF-8 sequence cut in half)
        ("=?utf-8?b?8J+W?= =?utf-8?b?qA==?= printer", "🖨 printer"),
        ("plain  =?utf-8?q?mixed?=  text", "plain  mixed  text"),
        ("=?unknown-8bit?q?caf=C3=A9?=", "café"),
        ("=?x-no-such-charset?q?na=EFve?=", "naïve"),
        ("=?utf-8?q?broken_=ZZ?= end", "broken =ZZ end"),
        ("folded\n\tsubject  ", "folded\tsubject"),
    ],
)
def test_decode_header_value(raw: str, decoded: str) -> None:
    assert decode_header_value(raw) == decoded


def test_raw_8bit_headers_utf8_then_latin1(blobs: FileBlobStore) -> None:
    utf8 = "From: Zoë SSmith <zoe@example.com>\nSubject: Ça marche pas".encode()
    env = parse(utf8 + b"\n\nbody\n", blobs)
    assert env.subject == "Ça marche pas" and env.sender.name == "Zoë SSmith"
    latin1 = "From: zoe@example.com\nSubject: Ça marche pas".encode("latin-1")
    assert parse(latin1 + b"\n\nbody\n", blobs).subject == "Ça marche pas"


def test_raw_8bit_header_uses_the_body_charset(blobs: FileBlobStore) -> None:
    raw = (
        "From: a@b.example\nSubject: 打印机坏了\nContent-Type: text/plain; charset=gb2312\n\n"
        "打印机坏了\n"
    ).encode("gb2312")
    env = parse(raw, blobs)
    assert env.subject == "打印机坏了" and env.text == "打印机坏了"


def test_address_edge_cases(blobs: FileBlobStore) -> None:
    raw = mail(
        """\
From: =?iso-8859-1?Q?Last=DFlName=2C_FirstName?= <comma.name@example.com>
To: =?utf-8?b?5bGx55Sw5aSq6YOO?= <yamada@example.jp>, undisclosed-recipients:;
Cc: alice@example.com <bob@example.com>, "John \\"Johnny\\" Doe" <john@example.com>,
 carol@example.com (Carol C)
"""
    )
    env = parse(raw, blobs)
    assert (env.sender.name, env.sender.address) == (
        "LastßlName, FirstName",
        "comma.name@example.com",
    )
    assert [(p.name, p.address) for p in EmailDetails.of(env).to] == [("山田太郎", "yamada@example.jp")]
    assert [(p.name, p.address) for p in EmailDetails.of(env).cc] == [
        ("alice@example.com", "bob@example.com"),
        ('John "Johnny" Doe', "john@example.com"),
        ("Carol C", "carol@example.com"),
    ]


def test_from_falls_back_to_sender(blobs: FileBlobStore) -> None:
    env = parse(mail("From: undisclosed\nSender: real@example.com\nSubject: x"), blobs)
    assert env.sender.address == "real@example.com"


def test_broken_header_continuation_is_mended(blobs: FileBlobStore) -> None:
    raw = mail(
        """\
Received: from relay.example (1.2.3.4)
by mx.example with SMTP; 5 Apr 2017 07:45:30 -0000
From: "Smith, Karoline" <karoline@example.com>
Subject: still here
Content-Type: multipart/alternative;
boundary="b1"
""",
        "--b1\nContent-Type: text/plain\n\nsome text\n--b1--\n",
    )
    env = parse(raw, blobs)
    assert env.sender.address == "karoline@example.com"
    assert env.subject == "still here" and env.text == "some text"


def test_headers_dict_is_bounded(blobs: FileBlobStore) -> None:
    extra = "".join(f"X-Custom-{i}: value {i}\n" for i in range(100))
    huge = "X-Huge: " + "a" * 10_000 + "\n"
    env = parse(mail("From: a@b.example\n" + huge + extra + "Subject: s"), blobs)
    assert "x-huge" not in env.headers
    assert len(env.headers) <= 60 and env.headers["from"] == "a@b.example"


# -- bodies -----------------------------------------------------------------------------------
def test_quoted_printable_and_base64_and_8bit(blobs: FileBlobStore) -> None:
    qp = mail(
        "From: a@b.example\nContent-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable",
        "Gr=FC=DFe, eine sehr lange Zeile die umbrochen=\n wurde.\n",
    )
    assert parse(qp, blobs).text == "Grüße, eine sehr lange Zeile die umbrochen wurde."
    b64 = mail(
        (
            "From: a@b.example\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: base64"
        ),
        "0J/RgNC40LLQtdGCLCDQvNC40YAh\n",
    )
    assert parse(b64, blobs).text == "Привет, мир!"
    eight = mail(
        (
            "From: a@b.example\nContent-Type: text/plain; charset=utf-8\n"
            "Content-Transfer-Encoding: 8bit"
        ),
        "Ça va très bien — merci\r\nLigne deux\r\n",
    )
    assert parse(eight, blobs).text == "Ça va très bien — merci\nLigne deux"


def test_broken_charsets_degrade(blobs: FileBlobStore) -> None:
    unknown = b"From: a@b.example\nContent-Type: text/plain; charset=x-klingon\n\ncaf\xc3\xa9\n"
    assert parse(unknown, blobs).text == "café"
    bad_utf8 = (
        b"From: a@b.example\nContent-Type: text/plain; charset=utf-8\n\nna\xefve caf\xc3\xa9\n"
    )
    assert parse(bad_utf8, blobs).text == "naïve café"
    wrong_label = b"From: a@b.example\nContent-Type: text/plain; charset=us-ascii\n\nK\xf6ln\n"
    assert parse(wrong_label, blobs).text == "Köln"
    undecodable = (
        b"From: a@b.example\nContent-Type: text/plain; charset=shift_jis\n\nab\x81\x39cd\n"
    )
    assert "\ufffd" in parse(undecodable, blobs).text


def test_iso_2022_jp_with_microsoft_extensions() -> None:
    # "①" is only in CP50221 (NEC row 13), which Python has no codec for.
    assert decode_bytes(b"\x1b$B-!#1\x1b(B", "ISO-2022-JP") == "①１"


def test_format_flowed(blobs: FileBlobStore) -> None:
    raw = mail(
        "From: a@b.example\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=yes",
        "This line is soft- \nwrapped and  \nthis one too.\n-- \nsig\n",
    )
    env = parse(raw, blobs)
    assert env.full_text == "This line is soft-wrapped and this one too.\n-- \nsig"
    assert env.text == "This line is soft-wrapped and this one too."


def test_html_only_mail(blobs: FileBlobStore) -> None:
    env = parse((FIXTURES / "html_only_cp1252.eml").read_bytes(), blobs)
    assert env.html is not None and "<h1>Bestellung 4711</h1>" in env.html
    assert env.full_text.startswith(
        "Bestellung 4711\n\nVielen Dank für Ihre Bestellung.\nLieferung"
    )
    assert "- Tasse\n- Teller" in env.full_text
    assert "Bestellstatus (https://shop.example/o/4711)" in env.full_text
    assert "> alte Nachricht" in env.full_text and "alte Nachricht" not in env.text


def test_inline_image_and_alternative(blobs: FileBlobStore) -> None:
    env = parse((FIXTURES / "related_inline_image.eml").read_bytes(), blobs)
    assert env.sender.name == "Jürgen Müller"
    assert [(p.name, p.address) for p in EmailDetails.of(env).cc] == [
        ("Doe, Jane", "jane@kunde.example"),
        ("山田", "yamada@kunde.example"),
    ]
    assert env.subject == "Drucker druckt nicht – Screenshot"
    assert env.text.startswith("Hallo, der Drucker zeigt diesen Fehler:")  # text/plain preferred
    (image,) = env.attachments
    assert image.content_type == "image/png" and image.filename == "fehler.png"
    assert image.inline and image.content_id == "fehler-1@kunde.example"
    assert blobs.get(image.sha256) == b"\x89PNG\r\n\x1a\nomnidesk-test-image-0001"
    assert env.html is not None
    assert 'src="cid:fehler-1@kunde.example"' in env.html
    for unsafe in ("<script", "onclick", "<style", "tracker.example"):
        assert unsafe not in env.html


def test_nested_message_is_attachment_and_forwarded_text(blobs: FileBlobStore) -> None:
    raw = (FIXTURES / "forwarded_rfc822.eml").read_bytes()
    env = parse(raw, blobs)
    (eml,) = env.attachments  # the PDF inside stays inside the .eml
    assert eml.content_type == "message/rfc822" and eml.filename == "Invoice 2024-117.eml"
    stored = blobs.get(eml.sha256)
    assert stored.startswith(b"From: Billing <billing@vendor.example>\n")
    assert stored in raw  # the attached bytes exactly as sent
    # The forward is content: kept in text, not cut as a quote.
    assert env.text.startswith("Please look at the mail below, the amount is wrong.")
    assert "---------- Forwarded message ---------" in env.text
    assert "Subject: Invoice 2024-117" in env.text
    assert "Grüße, the total due is 117,00 EUR." in env.text
    assert EmailDetails.of(env).loop.is_bounce is False and EmailDetails.of(env).loop.bounced_message_ids == ()


def test_attachment_names(blobs: FileBlobStore) -> None:
    raw = mail(
        'From: a@b.example\nContent-Type: multipart/mixed; boundary="m"',
        "--m\nContent-Type: text/plain\n\nsee attached\n"
        "--m\nContent-Type: application/pdf\nContent-Disposition: attachment;"
        " filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\nContent-Transfer-Encoding: base64\n\n"
        "JVBERi0xLjQKb21uaWRlc2sgdGVzdCBpbnZvaWNlCiUlRU9GCg==\n"
        '--m\nContent-Type: text/plain; name="=?utf-8?q?Notiz_=C3=BC.txt?="\n'
        'Content-Disposition: attachment; filename="../../etc/passwd"\n\nx\n'
        "--m\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n\n/9j/4AAQ\n"
        "--m\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n\n/9j/4AAR\n"
        "--m--\n",
    )
    env = parse(raw, blobs)
    assert env.text == "see attached"
    names = [a.filename for a in env.attachments]
    assert names == ["Rechnung März.pdf", "passwd", "image.jpg", "image1.jpg"]
    assert blobs.get(env.attachments[0].sha256) == b"%PDF-1.4\nomnidesk test invoice\n%%EOF\n"
    assert not any(a.inline for a in env.attachments)


def test_truncated_base64_attachment_decodes_what_is_there(blobs: FileBlobStore) -> None:
    raw = mail(
        'From: a@b.example\nContent-Type: multipart/mixed; boundary="m"',
        "--m\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        "aGVsbG8gd29ybGQ\n--m--\n",
    )
    (att,) = parse(raw, blobs).attachments
    assert blobs.get(att.sha256) == b"hello world"  # missing padding restored


# -- loops and bounces ------------------------------------------------------------------------
def test_dsn_bounce(blobs: FileBlobStore) -> None:
    env = parse((FIXTURES / "dsn_bounce.eml").read_bytes(), blobs)
    assert EmailDetails.of(env).loop.is_bounce and EmailDetails.of(env).loop.return_path_empty
    assert EmailDetails.of(env).loop.auto_submitted == "auto-replied"
    assert EmailDetails.of(env).loop.bounced_message_ids == ("<od-1042.reply.1@omnidesk.test>",)
    assert env.text.startswith("This is the mail system at host mx.example.net.")
    assert "Hello, we have received your request." not in env.full_text  # our own mail
    names = [(a.content_type, a.filename) for a in env.attachments]
    assert names == [
        ("message/delivery-status", "Delivery report.txt"),
        ("message/rfc822", "Undelivered Message.eml"),
    ]
    assert _automated(env) is not None


def test_dsn_with_rfc822_headers_part(blobs: FileBlobStore) -> None:
    raw = mail(
        "From: postmaster@mx.example\nSubject: Delivery Status Notification (Failure)\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        "--r\nContent-Type: text/plain\n\nfailed\n"
        "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
        "Final-Recipient: rfc822; x@y.example\nAction: failed\nStatus: 5.0.0\n"
        "--r\nContent-Type: text/rfc822-headers\n\nFrom: support@omnidesk.test\n"
        "Message-ID:\n <od-7.2@omnidesk.test>\nSubject: hi\n--r--\n",
    )
    env = parse(raw, blobs)
    assert EmailDetails.of(env).loop.is_bounce
    assert EmailDetails.of(env).loop.bounced_message_ids == ("<od-7.2@omnidesk.test>",)


def test_plain_text_bounce_from_mailer_daemon(blobs: FileBlobStore) -> None:
    raw = mail(
        "From: MAILER-DAEMON@mx.example\nSubject: failure notice\nMessage-ID: <b1@mx.example>",
        "Hi. This is the qmail-send program.\n\n--- Below this line is a copy of the message.\n\n"
        "Return-Path: <support@omnidesk.test>\nMessage-ID: <od-9.1@omnidesk.test>\nSubject: x\n",
    )
    env = parse(raw, blobs)
    assert EmailDetails.of(env).loop.is_bounce and EmailDetails.of(env).loop.bounced_message_ids == ("<od-9.1@omnidesk.test>",)


@pytest.mark.parametrize(
    ("header", "field", "value", "reason"),
    [
        ("Auto-Submitted: auto-replied", "auto_submitted", "auto-replied", "Auto-Submitted"),
        ("Precedence: bulk", "precedence", "bulk", "Precedence"),
        ("List-Id: Team <team.lists.example>", "list_id", "Team <team.lists.example>", "List-Id"),
        ("List-Unsubscribe: <mailto:u@lists.example>", "list_unsubscribe", True, "List-Unsub"),
        ("Return-Path: <>", "return_path_empty", True, "Return-Path"),
        ("X-Auto-Response-Suppress: OOF, AutoReply", "x_auto_response_suppress", "OOF, AutoReply",
         "X-Auto-Response-Suppress"),
        ("X-Autoreply: yes", "auto_response_headers", ("X-Autoreply",), "X-Autoreply"),
        ("X-Autorespond: vacation", "auto_response_headers", ("X-Autorespond",), "X-Autorespond"),
        ("X-Autogenerated: Reply", "auto_response_headers", ("X-Autogenerated",),
         "X-Autogenerated"),
        ("X-AutoReply-From: a@b.example", "auto_response_headers", ("X-AutoReply-From",),
         "X-AutoReply-From"),
    ],
)  # fmt: skip
def test_loop_signals(
    blobs: FileBlobStore, header: str, field: str, value: object, reason: str
) -> None:
    env = parse(mail(f"From: a@b.example\n{header}\nSubject: s"), blobs)
    assert getattr(EmailDetails.of(env).loop, field) == value
    explanation = _automated(env)
    assert explanation is not None and reason.lower() in explanation.lower()


def test_x_loop_keeps_every_value(blobs: FileBlobStore) -> None:
    raw = mail("From: a@b.example\nX-Loop: support@omnidesk.test\nX-Loop: helpdesk@other.example")
    env = parse(raw, blobs)
    assert EmailDetails.of(env).loop.x_loop == ("support@omnidesk.test", "helpdesk@other.example")
    assert _automated(env, own_addresses=("support@omnidesk.test",)) is not None
    assert _automated(env) is None


def test_human_mail_has_no_loop_signal(blobs: FileBlobStore) -> None:
    raw = mail("From: a@b.example\nAuto-Submitted: no\nX-Autoreply: no\nPrecedence: first-class")
    assert _automated(parse(raw, blobs)) is None


def test_read_receipt_is_machine_mail(blobs: FileBlobStore) -> None:
    raw = mail(
        "From: a@b.example\nContent-Type: multipart/report; report-type=disposition-notification;"
        ' boundary="r"',
        "--r\nContent-Type: text/plain\n\nread\n--r\nContent-Type: message/disposition-notification"
        "\n\nOriginal-Message-ID: <od-3.1@omnidesk.test>\nDisposition: manual-action/MDN-sent-"
        "manually; displayed\n--r--\n",
    )
    env = parse(raw, blobs)
    assert not EmailDetails.of(env).loop.is_bounce and _automated(env) is not None


# -- limits and hostile input -----------------------------------------------------------------
def _nested(depth: int) -> bytes:
    body = "leaf\n"
    for level in reversed(range(depth)):
        body = (
            f"--b{level}\nContent-Type: text/plain\n\nx\n--b{level}\n"
            f'Content-Type: multipart/mixed; boundary="b{level + 1}"\n\n{body}--b{level}--\n'
        )
    return mail('From: a@b.example\nContent-Type: multipart/mixed; boundary="b0"', body)


@pytest.mark.parametrize(
    ("raw", "limits", "needle"),
    [
        (mail("From: a@b.example", "x" * 5000), ParseLimits(max_bytes=1000), "max_bytes=1000"),
        (
            mail("From: a@b.example\nX-Big: " + "y" * 3000),
            ParseLimits(max_header_bytes=2048),
            "max_header_bytes=2048",
        ),
        (_nested(8), ParseLimits(max_depth=5), "max_depth=5"),
        (
            mail(
                'From: a@b.example\nContent-Type: multipart/mixed; boundary="m"',
                "".join("--m\nContent-Type: text/plain\n\np\n" for _ in range(30)) + "--m--\n",
            ),
            ParseLimits(max_parts=10),
            "max_parts=10",
        ),
    ],
)
def test_limits(blobs: FileBlobStore, raw: bytes, limits: ParseLimits, needle: str) -> None:
    with pytest.raises(UnparseableMessage) as caught:
        parse(raw, blobs, limits=limits)
    assert needle in caught.value.reason


def test_deep_nesting_within_limits_parses(blobs: FileBlobStore) -> None:
    env = parse(_nested(8), blobs)
    assert env.text.startswith("x")


def test_nesting_beyond_the_parser_is_quarantined(blobs: FileBlobStore) -> None:
    with pytest.raises(UnparseableMessage):
        parse(_nested(1500), blobs, limits=ParseLimits(max_depth=10_000, max_parts=10_000))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe" * 100,
        b"\n\n\n",
        bytes(range(256)) * 4,
        b"From: \nSubject: no sender\n\nbody",
        b"garbage without any header structure at all\n\n",
    ],
)
def test_garbage_is_unparseable(blobs: FileBlobStore, raw: bytes) -> None:
    with pytest.raises(UnparseableMessage):
        parse(raw, blobs)


def test_hostile_headers_stay_cheap(blobs: FileBlobStore) -> None:
    # Thousands of nested comments (the stdlib address parser recurses per level), a long junk
    # token in References, an endless unterminated encoded word.
    raw = mail(
        "From: Ann (a (b (c (d) c) b) a) <ann@x.example>\n"
        "Cc: " + "(" * 20_000 + "x@y.example\n"
        "References: " + "a" * 100_000 + " <r@x.example>\n"
        "Subject: =?utf-8?q?" + "a" * 50_000
    )
    env = parse(raw, blobs)
    assert (env.sender.name, env.sender.address) == ("Ann", "ann@x.example")
    assert EmailDetails.of(env).references == ("<r@x.example>",)
    assert EmailDetails.of(env).cc == ()


def test_random_mutations_never_crash(blobs: FileBlobStore) -> None:
    seeds = [(FIXTURES / name).read_bytes() for name in sorted(p.name for p in FIXTURES.iterdir())]
    rng = random.Random(20240305)
    for _ in range(150):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 12)):
            action = rng.random()
            pos = rng.randrange(len(data))
            if action < 0.4:
                data[pos] = rng.randrange(256)
            elif action < 0.7:
                del data[pos : pos + rng.randint(1, 40)]
            else:
                data[pos:pos] = rng.choice(
                    [b"\n", b"--", b"=?", b"?=", b"\xff", b":", b"<", b"\n\n"]
                )
        try:
            env = parse(bytes(data), blobs)
        except UnparseableMessage:
            continue
        assert Envelope.model_validate_json(env.model_dump_json()) == env


def test_blob_store_failure_is_retryable(tmp_path: Path) -> None:
    class Broken(FileBlobStore):
        def put(self, data: bytes) -> str:
            raise OSError("disk full")

    with pytest.raises(IntakeUnavailable, match="disk full"):
        parse_email(mail(BASIC), blobs=Broken(tmp_path), received_at=RECEIVED)


def test_premature_close_delimiter_keeps_later_parts(blobs: FileBlobStore) -> None:
    # The inner multipart reuses the outer boundary, so the parser closes the outer one early.
    raw = mail(
        'From: a@b.example\nContent-Type: multipart/mixed; boundary="same"',
        '--same\nContent-Type: multipart/alternative; boundary="same"\n\n'
        "--same\nContent-Type: text/plain\n\nhello\n--same--\n\n"
        '--same\nContent-Type: application/zip; name="a.zip"\nContent-Transfer-Encoding: base64\n\n'
        "UEsDBA==\n--same--\n",
    )
    env = parse(raw, blobs)
    assert env.text == "hello"
    assert [a.filename for a in env.attachments] == ["a.zip"]


# -- headers.py helpers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("<abc@example.com>", "<abc@example.com>"),
        ("  <abc@example.com> (comment)", "<abc@example.com>"),
        ("abc@example.com", "<abc@example.com>"),
        ("<\n abc@example.com>", "<abc@example.com>"),
        ("<abc>", None),
        ("", None),
        ("<a b@example.com>", None),
        ("<ünï@example.com>", None),
    ],
)
def test_canonical_message_id(value: str, canonical: str | None) -> None:
    assert canonical_message_id(value) == canonical


def test_extract_message_ids_tolerates_junk() -> None:
    value = (
        "<a@x.example> <b@x.example>,<c@x.example>\n\t d@x.example (Mike's message of Tue)"
        " <a@x.example> <not-an-id> junk"
    )
    assert extract_message_ids(value) == (
        "<a@x.example>",
        "<b@x.example>",
        "<c@x.example>",
        "<d@x.example>",
    )
    assert extract_message_ids("") == ()
    in_reply_to = '<20240101.1@x.example> (message from "Ana" of "Mon, 1 Jan 2024")'
    assert extract_message_ids(in_reply_to) == ("<20240101.1@x.example>",)


@pytest.mark.parametrize(
    ("subject", "refs"),
    [
        ("[OD-1042] Printer", ("OD-1042",)),
        ("Re: AW: printer (OD-1042)", ("OD-1042",)),
        ("od-7 and [OD-1042] and OD-7", ("OD-7", "OD-1042")),
        ("XOD-1042 OD-1042x OD-", ()),
        ("[OD#55]", ("OD-55",)),
    ],
)
def test_find_ticket_refs(subject: str, refs: tuple[str, ...]) -> None:
    assert find_ticket_refs(subject, "OD") == refs


# -- html.py ------------------------------------------------------------------------------------
def test_sanitize_html_allow_list() -> None:
    dirty = (
        '<div onmouseover="x()" style="background:url(https://t.example/x)">'
        '<a href="javascript:alert(1)">bad</a> <a href="https://ok.example" target="_blank">ok</a>'
        '<img src="https://t.example/p.gif"><img src="cid:logo@x"><iframe src="https://e"></iframe>'
        "<form><input name=q></form><script>alert(1)</script><b>bold</b></div>"
    )
    clean = sanitize_html(dirty)
    for bad in (
        "onmouseover",
        "style=",
        "javascript:",
        "t.example",
        "<iframe",
        "<form",
        "<input",
        "<script",
    ):
        assert bad not in clean
    assert '<a href="https://ok.example" rel="noopener noreferrer nofollow">ok</a>' in clean
    assert '<img src="cid:logo@x">' in clean and "<b>bold</b>" in clean
    assert 'src="https://t.example/p.gif"' in sanitize_html(dirty, remote_images=True)


def test_html_to_text_structure() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p>First&nbsp;para with <b>bold</b>\n text.</p><p>Second<br>line</p>"
        "<ol><li>one</li><li>two</li></ol><ul><li>dot</li></ul>"
        '<p><a href="https://example.com/x">the docs</a>, <a href="https://example.com">'
        'https://example.com</a>, <a href="mailto:a@b.example">a@b.example</a></p>'
        "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
        "<pre>  keep\n    this</pre>"
        "<blockquote><p>quoted</p><blockquote>deeper</blockquote></blockquote>"
        "</body></html>"
    )
    assert html_to_text(html) == (
        "First para with bold text.\n\nSecond\nline\n\n1. one\n2. two\n- dot\n\n"
        "the docs (https://example.com/x), https://example.com, a@b.example\n\n"
        "a b\nc d\n\n  keep\n    this\n\n> quoted\n>\n> > deeper"
    )


def _automated(env: Envelope, *, own_addresses: tuple[str, ...] = ()) -> str | None:
    """The email adapter's verdict on a parsed message (as ``Envelope.automated``, with our
    addresses given here)."""
    return automated_reason(env.sender.address, EmailDetails.of(env).loop, own_addresses=own_addresses)
