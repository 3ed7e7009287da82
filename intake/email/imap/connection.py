"""Opening an IMAP connection to a configured mailbox, and saying in one line why it failed.

``connect`` returns a logged-in ``IMAPClient`` (TLS, STARTTLS or, for localhost only, plain text),
with timeouts on every socket operation and TCP keepalive on, and times returned as aware
datetimes. ``describe_error`` turns whatever went wrong into a short cause for the log (never the
password). ``probe`` is what ``omnidesk channels check`` reports for one mailbox.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from dataclasses import dataclass, field

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientError, LoginError
from imapclient.util import to_unicode

from intake.email.imap.settings import ImapMailbox

__all__ = ["Capabilities", "ProbeResult", "capabilities", "close_quietly", "connect", "describe_error", "probe"]

CONNECT_TIMEOUT = 30.0


def connect(mailbox: ImapMailbox, password: str, *, timeout: float | None = None) -> IMAPClient:
    """A logged-in client for ``mailbox``; raises on any failure (see ``describe_error``)."""
    read_timeout = timeout if timeout is not None else mailbox.timeout_seconds
    timeouts = SocketTimeout(connect=min(CONNECT_TIMEOUT, read_timeout), read=read_timeout)
    context = None
    if mailbox.security != "none":
        # Certificates and host names are verified: against the system's CAs, or ca_file's.
        context = ssl.create_default_context(cafile=mailbox.ca_file)
    client = IMAPClient(
        mailbox.host,
        port=mailbox.effective_port,
        ssl=mailbox.security == "tls",
        ssl_context=context,
        timeout=timeouts,
    )
    try:
        if mailbox.security == "starttls":
            client.starttls(context)
        client.normalise_times = False  # INTERNALDATE as an aware datetime, converted to UTC by us
        _keepalive(client)
        client.login(mailbox.username, password)
    except BaseException:
        close_quietly(client, logout=False)
        raise
    return client


def _keepalive(client: IMAPClient) -> None:
    """Let the kernel notice a peer that vanished without a word (NAT, firewall, dead host)."""
    try:
        sock = client.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:
        pass


def close_quietly(client: IMAPClient | None, *, logout: bool = True) -> None:
    """Log out (or just drop the connection); errors here mean it was already gone."""
    if client is None:
        return
    if logout:
        try:
            client.logout()
            return
        except Exception:  # noqa: BLE001, S110 - the connection is already gone: nothing to do
            pass
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001, S110
        pass


@dataclass(frozen=True)
class Capabilities:
    idle: bool
    move: bool
    uidplus: bool


def capabilities(client: IMAPClient) -> Capabilities:
    """What the server offers after login (MOVE is often only advertised then)."""
    return Capabilities(
        idle=client.has_capability("IDLE"),
        move=client.has_capability("MOVE"),
        uidplus=client.has_capability("UIDPLUS"),
    )


def describe_error(exc: BaseException, mailbox: ImapMailbox | None = None) -> str:
    """A short, log-safe cause: what failed and what the server or the system said."""
    where = f"{mailbox.host}:{mailbox.effective_port}" if mailbox is not None else "the server"
    if isinstance(exc, LoginError):
        user = f" for {mailbox.username}" if mailbox is not None else ""
        hint = f" (check the username and {mailbox.password_env})" if mailbox is not None else ""
        return f"login refused{user}: {_text(exc)}{hint}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of {where} not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {mailbox.host if mailbox else 'the host'}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer from {where} in time (timed out)"
    if isinstance(exc, (ConnectionError, EOFError)):
        return f"connection to {where} lost: {exc.__class__.__name__}: {exc}".rstrip(": ")
    if isinstance(exc, imaplib.IMAP4.abort):
        return f"connection to {where} lost: {_text(exc)}"
    if isinstance(exc, (IMAPClientError, imaplib.IMAP4.error)):
        return f"IMAP error from {where}: {_text(exc)}"
    if isinstance(exc, OSError):
        return f"network error with {where}: {exc.strerror or exc}"
    return f"{exc.__class__.__name__}: {exc}"


def _text(exc: BaseException) -> str:
    parts = []
    for arg in exc.args:
        text = to_unicode(arg) if isinstance(arg, bytes) else str(arg)
        if len(text) >= 3 and text[:2] in ("b'", 'b"') and text[-1] == text[1]:
            text = text[2:-1]  # imapclient passes str(bytes) on
        parts.append(text.strip())
    return " ".join(p for p in parts if p) or exc.__class__.__name__


@dataclass
class ProbeResult:
    """What one mailbox looks like from here: the answer of ``omnidesk channels check``."""

    mailbox: ImapMailbox
    ok: bool = False
    error: str = ""
    messages: int | None = None
    unseen: int | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    capabilities: Capabilities | None = None
    move_to_exists: bool | None = None
    notes: list[str] = field(default_factory=list)


def probe(mailbox: ImapMailbox, password: str, *, timeout: float | None = None) -> ProbeResult:
    """Log in, look at the folder read-only, log out. Changes nothing on the server."""
    result = ProbeResult(mailbox)
    client = None
    try:
        client = connect(mailbox, password, timeout=timeout)
        result.capabilities = capabilities(client)
        status = client.folder_status(mailbox.folder, ["MESSAGES", "UIDVALIDITY", "UIDNEXT", "UNSEEN"])
        result.messages = int(status[b"MESSAGES"])
        result.unseen = int(status.get(b"UNSEEN", 0))
        result.uidvalidity = int(status[b"UIDVALIDITY"])
        result.uidnext = int(status[b"UIDNEXT"]) if b"UIDNEXT" in status else None
        client.select_folder(mailbox.folder, readonly=True)
        if mailbox.move_to is not None:
            result.move_to_exists = bool(client.folder_exists(mailbox.move_to))
        result.ok = True
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none escapes
        result.error = describe_error(exc, mailbox)
    finally:
        close_quietly(client)
    return result
