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


def test_raw_legacy_header_still_falls_back_to_its_charset(blobs: FileBlobStore) -> None:
    raw = (
        "From: Jürgen Müller <jm@dorf.example>\nTo: support@omnidesk.test\n"
        "Subject: Grüße aus Köln\n\nHallo\n"
    ).encode("latin-1")
    env = parse(raw, blobs)
    assert env.subject == "Grüße aus Köln"
    assert env.sender.name == "Jürgen Müller"
