"""Outbound email: compose the MIME message from an outbox row and hand it to an SMTP server.

The Message-ID is the outbox row's, fixed when the row was written: a resend after a crash is
the same message to every receiving system. Header values are stripped of CR and LF before they
reach a header, so a customer-supplied name or subject can never start a header of its own.
"""

from __future__ import annotations

import html
import secrets
import smtplib
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from intake.blobs import BlobStore
from tickets.models import utcnow
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError
from workers.outbox import OutboxMessage

__all__ = ["ComposedMail", "FileDropSender", "SmtpSender", "compose_email", "email_sender_from_url"]


# compat32 semantics with the CRLF line ends SMTP requires (smtplib sends bytes as they are).
_WIRE = compat32.clone(linesep="\r\n")
# For SMTPUTF8 mail (RFC 6531/6532): headers may hold raw UTF-8, which compat32 writes as it is
# when the value carries it as surrogate escapes and the policy allows 8-bit data.
_WIRE_UTF8 = _WIRE.clone(cte_type="8bit")


def _one_line(value: object) -> str:
    return " ".join(str(value or "").replace("\r", " ").replace("\n", " ").split())


def _header_text(value: str) -> str | Header:
    """A header value, RFC 2047-encoded when it is not plain ASCII."""
    return value if value.isascii() else Header(value, "utf-8")


def _address(addr: str, name: str = "") -> tuple[str, str]:
    """(formatted "Name <a@b>" header value, bare address as it travels).

    A non-ASCII domain is IDNA-encoded, so only a non-ASCII local part (RFC 6532) makes the
    address need SMTPUTF8; such an address is written into the header as raw UTF-8.
    """
    addr = _one_line(addr)
    display, bare = parseaddr(addr)
    bare = _ascii_domain(bare or addr)
    local, _, domain = bare.rpartition("@")
    quoted = len(local) > 1 and local[0] == local[-1] == '"'
    if not local or not domain or " " in domain or (" " in local and not quoted):
        raise PermanentDeliveryError(f"not an email address: {addr!r}")
    display = _one_line(name or display)
    if bare.isascii():
        return formataddr((display, bare), charset="utf-8"), bare
    return _utf8_header(_utf8_mailbox(display, bare)), bare


def _ascii_domain(addr: str) -> str:
    """The address with its domain in IDNA form (RFC 5891); unchanged if that is impossible."""
    local, at, domain = addr.rpartition("@")
    if not at or domain.isascii():
        return addr
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return addr  # left as UTF-8: then it needs SMTPUTF8 like a non-ASCII local part


def _utf8_mailbox(display: str, bare: str) -> str:
    if not display:
        return bare
    escaped = display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{bare}>'


def _utf8_header(value: str) -> str:
    """A header value holding raw UTF-8, in the form the compat32 generator writes unchanged."""
    return value.encode("utf-8").decode("ascii", errors="surrogateescape")


def text_to_html(text: str) -> str:
    """A plain HTML rendering of a text body: paragraphs and line breaks, everything escaped."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "".join("<p>" + html.escape(p).replace("\n", "<br>\n") + "</p>\n" for p in paragraphs)
    return f'<!DOCTYPE html>\n<html><body style="font-family: sans-serif">\n{body}</body></html>\n'


@dataclass(frozen=True)
class ComposedMail:
    raw: bytes
    envelope_from: str
    recipient: str
    # Addresses with a non-ASCII local part (RFC 6532): only a relay offering SMTPUTF8 takes them.
    utf8_addresses: tuple[str, ...] = ()


def compose_email(message: OutboxMessage, blobs: BlobStore | None = None) -> ComposedMail:
    """See ``_compose``; data that cannot become a message is a permanent failure, never a crash
    (a crash would leave the outbox row pending, to fail the same way on every attempt)."""
    try:
        return _compose(message, blobs)
    except (UnicodeError, ValueError) as exc:
        raise PermanentDeliveryError(f"cannot compose the message: {exc}") from exc


def _compose(message: OutboxMessage, blobs: BlobStore | None) -> ComposedMail:
    """The MIME bytes of an outbox row: a text part, an HTML alternative, attachments.

    Payload keys: from, from_name, to, to_name, subject, text, html (optional; derived from the
    text otherwise), in_reply_to, references, auto_submitted, ticket_ref, attachments (list of
    {sha256, filename, content_type} in the blob store).

    Built with the stdlib's compat32 classes and our own boundary: four times faster than the
    ``EmailMessage`` API, which parses every header it is given back into objects.
    """
    p = message.payload
    from_header, from_address = _address(str(p.get("from", "")), str(p.get("from_name", "")))
    to_header, to_address = _address(str(p.get("to") or message.recipient), str(p.get("to_name", "")))
    text = str(p.get("text", ""))
    body = MIMEMultipart("alternative", boundary=f"=_od_{secrets.token_hex(16)}")
    body.attach(MIMEText(text, "plain", "utf-8"))
    body.attach(MIMEText(str(p.get("html") or text_to_html(text)), "html", "utf-8"))
    mail: Message = body
    attachments = cast(list[Mapping[str, Any]], p.get("attachments") or [])
    if attachments:
        mail = MIMEMultipart("mixed", boundary=f"=_od_{secrets.token_hex(16)}")
        mail.attach(body)
        for attachment in attachments:
            if blobs is None:
                raise PermanentDeliveryError("message has attachments but no blob store was given")
            maintype, _, subtype = str(attachment.get("content_type") or "application/octet-stream").partition("/")
            part = MIMEBase(maintype or "application", subtype or "octet-stream")
            part.set_payload(blobs.get(str(attachment["sha256"])))
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment",
                            filename=("utf-8", "", _one_line(attachment.get("filename") or "attachment")))
            mail.attach(part)
    mail["From"] = from_header
    mail["To"] = to_header
    mail["Subject"] = _header_text(_one_line(p.get("subject", "")))  # type: ignore[assignment]
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = _one_line(message.idempotency_key)
    if p.get("in_reply_to"):
        mail["In-Reply-To"] = _one_line(p["in_reply_to"])
    references = p.get("references") or []
    if isinstance(references, list) and references:
        mail["References"] = " ".join(_one_line(r) for r in references)
    if p.get("auto_submitted"):
        mail["Auto-Submitted"] = _one_line(p["auto_submitted"])
        # Ask Exchange and friends not to answer our automatic mail with theirs.
        mail["X-Auto-Response-Suppress"] = "All"
    if p.get("ticket_ref"):
        mail["X-Omnidesk-Ticket"] = _one_line(p["ticket_ref"])
    # Names the help desk, so our own mail coming back (a forward, a loop through a customer's
    # auto-forwarder) is recognised and never answered.
    mail["X-Loop"] = from_address
    # Automatic replies go out with an empty envelope sender (RFC 3834): bounces of them must
    # not loop back into the help desk as new tickets.
    envelope_from = "" if message.kind == "ack" else from_address
    recipient = _ascii_domain(_one_line(message.recipient))
    utf8 = tuple(dict.fromkeys(a for a in (recipient, to_address, from_address) if not a.isascii()))
    raw = mail.as_bytes(policy=_WIRE_UTF8 if utf8 else _WIRE)
    return ComposedMail(raw=raw, envelope_from=envelope_from, recipient=recipient, utf8_addresses=utf8)


class SmtpSender:
    """Sends through an SMTP server named by ``smtp://user:pass@host:port`` (or smtps, +starttls)."""

    def __init__(self, url: str, *, timeout: float = 30.0, blobs: BlobStore | None = None) -> None:
        self.blobs = blobs
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.scheme == "smtps" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._local = threading.local()

    def _connect(self) -> smtplib.SMTP:
        if self.scheme == "smtps":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.scheme == "smtp+starttls":
            client.starttls(context=ssl.create_default_context())
        return client

    def send(self, message: OutboxMessage) -> str:
        mail = compose_email(message, self.blobs)
        try:
            refused = self._send(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(400 <= code < 500 for code in codes):
                raise TemporaryDeliveryError(f"recipient refused for now: {exc.recipients}") from exc
            raise PermanentDeliveryError(f"recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryDeliveryError(f"SMTP login failed ({exc.smtp_code}); check the outbound URL") from exc
        except smtplib.SMTPResponseException as exc:
            error = f"{exc.smtp_code} {exc.smtp_error!r}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentDeliveryError(error) from exc
            raise TemporaryDeliveryError(error) from exc
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise TemporaryDeliveryError(f"{exc.__class__.__name__}: {exc}") from exc
        if refused:
            raise PermanentDeliveryError(f"recipient refused: {refused}")
        return message.idempotency_key

    def _send(self, mail: ComposedMail) -> dict[str, tuple[int, bytes]]:
        """Send over this thread's open connection, opening (or reopening) it as needed.

        One connection per worker thread saves a TCP and EHLO round trip per message. A server
        that dropped an idle connection is reconnected once; the resend carries the same
        Message-ID, so a receiver that did get the first copy drops the second.
        """
        client: smtplib.SMTP | None = getattr(self._local, "client", None)
        for attempt in (1, 2):
            if client is None:
                client = self._connect()
                if self.username:
                    client.login(self.username, self.password or "")
                self._local.client = client
            try:
                # smtplib resets the SMTP transaction itself after a refusal, so a reused
                # connection is always clean here.
                return client.sendmail(
                    mail.envelope_from, [mail.recipient], mail.raw, mail_options=_options(client, mail)
                )
            except smtplib.SMTPServerDisconnected:
                self._drop()
                client = None
                if attempt == 2:
                    raise
            except (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused, PermanentDeliveryError):
                raise  # the server answered: the connection is still good
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


def _options(client: smtplib.SMTP, mail: ComposedMail) -> list[str]:
    """MAIL FROM options: SMTPUTF8 when the message needs it, and only if the relay offers it.

    Sent without the extension, a UTF-8 address would be refused or mangled by every relay on the
    way, so a relay without it is a permanent failure that says why.
    """
    if not mail.utf8_addresses:
        return []
    client.ehlo_or_helo_if_needed()
    if not client.has_extn("smtputf8"):
        needed = ", ".join(mail.utf8_addresses)
        raise PermanentDeliveryError(f"the relay does not offer SMTPUTF8, needed for the address {needed}")
    return ["SMTPUTF8"]


class FileDropSender:
    """Writes each message as a .eml file: the laptop default when no outbound SMTP is set."""

    def __init__(self, directory: Path, *, blobs: BlobStore | None = None) -> None:
        self.directory = Path(directory)
        self.blobs = blobs

    def send(self, message: OutboxMessage) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        mail = compose_email(message, self.blobs)
        target = self.directory / f"{message.id:08d}.eml"
        target.write_bytes(mail.raw)
        return str(target)


def email_sender_from_url(url: str, data_dir: Path, blobs: BlobStore | None = None) -> SmtpSender | FileDropSender:
    if url:
        return SmtpSender(url, blobs=blobs)
    return FileDropSender(data_dir / "sent-mail", blobs=blobs)


def senders(settings: Any, blobs: BlobStore) -> dict[str, Any]:
    """The email sender of these settings: SMTP when an outbound URL is set, else .eml files."""
    url = settings.outbound_smtp_url.get_secret_value()
    return {"email": email_sender_from_url(url, settings.data_dir, blobs)}
