"""The SMTP edge: an aiosmtpd handler that only says yes once the message is durable.

The handler is thin: it checks recipients against the domains we serve (never an open relay),
hands the bytes to ``accept`` in a thread (the database is blocking I/O), and maps the outcome
to SMTP replies. Any failure is a ``451 4.3.0`` so the sending server retries; aiosmtpd's own
default for an exception, ``500``, would make it bounce the customer's mail.

DATA is read by our own loop (``DataReader``) rather than aiosmtpd's, which splits lines at CRLF
only: a message sent with bare LF line ends (``smtplib.sendmail`` with bytes does that) is one
"line" to it, refused ``500 Line too long`` as soon as it passes 1,001 bytes, and the sender
bounces the customer's mail. We do what Postfix does with ``smtpd_forbid_bare_newline =
normalize``: a line may end in CRLF or a bare LF, every line is stored with CRLF, and DATA ends
only at CRLF "." CRLF. Ending it at ``LF . LF`` (or ``LF . CRLF``) as well would let a sender
smuggle a second message inside the first one's DATA (SMTP smuggling).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, syntax

from intake.errors import IntakeUnavailable, MessageTooLarge, RejectedMessage
from intake.log import Accepted

__all__ = ["MIN_MAX_LINE_BYTES", "DataReader", "SmtpIntakeHandler", "start_smtp_server"]

log = logging.getLogger(__name__)

AcceptFn = Callable[[bytes, list[str], datetime], Accepted]

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"

# The longest line allowed is the setting ``smtp_max_line_bytes`` (why its default is 64 KiB
# is said there); it can be no less than every line RFC 5321 allows: 1,000 bytes and a
# transparency dot.
MIN_MAX_LINE_BYTES = 1001


class DataReader:
    """The DATA section of one mail, fed one wire line at a time, as message bytes with CRLF ends.

    ``feed`` takes what the stream gives: a whole line ending in LF (with or without the CR), or
    a piece of a line too long for the stream's buffer. It returns True when the piece ended
    DATA. Lines are de-dotted (RFC 5321 4.5.2) and stored with CRLF whatever ending they came
    with. After the end, ``refusal`` is the SMTP reply when the message cannot be taken (a line
    longer than ``max_line_bytes``, or more than ``max_bytes`` in all), else ``content()`` is it.
    Once refused, lines are dropped as they come (no memory is held for a mail we refuse) but
    still read to the end, so the reply comes after DATA, where the client listens for it.
    """

    def __init__(self, *, max_line_bytes: int, max_bytes: int | None) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_bytes = max_bytes
        self.refusal: str | None = None
        self._lines: list[bytes] = []
        self._wire_bytes = 0
        # The end of DATA is CRLF "." CRLF; the CRLF of the DATA command itself counts as the
        # first one, so an empty message ("." right away) ends it too.
        self._after_crlf = True
        # Inside a line longer than the stream's buffer: only its last byte matters (a CR
        # before the LF of the next piece still makes a CRLF).
        self._in_long_line = False
        self._last_byte = b""

    def feed(self, piece: bytes) -> bool:
        if not piece.endswith(b"\n"):
            # A piece of an overlong line: it cannot be the end, and it is refused.
            self._count(piece)
            self._in_long_line = True
            self._last_byte = piece[-1:]
            self._refuse_long_line()
            return False
        if self._in_long_line:
            self._count(piece)
            self._in_long_line = False
            split_crlf = piece == b"\n" and self._last_byte == b"\r"
            self._after_crlf = piece.endswith(b"\r\n") or split_crlf
            return False
        if piece == b".\r\n" and self._after_crlf:
            return True
        self._count(piece)
        crlf = piece.endswith(b"\r\n")
        self._after_crlf = crlf
        if len(piece) > self.max_line_bytes:
            self._refuse_long_line()
        if self.refusal is None:
            line = piece[:-2] if crlf else piece[:-1]
            # RFC 5321 4.5.2: a leading dot is removed when there are other characters on the
            # line. A lone "." that did not end DATA (it followed a bare LF, or ended in one) is
            # text and stays.
            if line.startswith(b".") and len(line) > 1:
                line = line[1:]
            self._lines.append(line + b"\r\n")
        return False

    def content(self) -> bytes:
        if self.refusal is not None:
            raise ValueError(f"this message was refused ({self.refusal}); it has no content")
        return b"".join(self._lines)

    def _count(self, piece: bytes) -> None:
        # Bytes as sent (with the dots and the ends they came with), as SIZE counts them.
        self._wire_bytes += len(piece)
        if self.max_bytes is not None and self._wire_bytes > self.max_bytes:
            self._refuse(f"552 5.3.4 Message too big (limit {self.max_bytes} bytes)")

    def _refuse_long_line(self) -> None:
        self._refuse(
            "500 5.6.0 Line too long: a line of this message is longer than "
            f"{self.max_line_bytes} bytes (RFC 5321 4.5.3.1.6); wrap long lines or send the "
            "body quoted-printable or base64"
        )

    def _refuse(self, reply: str) -> None:
        if self.refusal is None:  # the first problem is the one reported
            self.refusal = reply
        self._lines.clear()


class _NormalisingSMTP(SMTP):
    """aiosmtpd's SMTP session with our DATA loop (see the module docstring)."""

    def __init__(self, handler: Any, *, max_line_bytes: int, **kwargs: Any) -> None:
        # aiosmtpd sizes its stream buffer from ``line_length_limit`` in ``__init__``: it must
        # hold a whole line to find its end. Commands keep their own, smaller limits.
        self.line_length_limit = max_line_bytes
        if kwargs.get("decode_data"):
            raise ValueError("the SMTP intake stores raw bytes: decode_data must be False")
        super().__init__(handler, **kwargs)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method name
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader = DataReader(max_line_bytes=self.line_length_limit, max_bytes=self.data_size_limit)
        ended = False
        while self.transport is not None and not ended:
            try:
                piece = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                # No LF within the buffer: take what is there as a piece of an overlong line.
                piece = await self._reader.read(exc.consumed)
            except asyncio.CancelledError:
                # The client went away during DATA (aiosmtpd cancels the session's task).
                self._writer.close()
                raise
            ended = reader.feed(piece)
        if not ended:
            return  # the connection closed inside DATA: there is no whole message to take
        if reader.refusal is not None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(reader.refusal)
            return
        content = reader.content()
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


class _IntakeController(Controller):
    def __init__(self, handler: Any, *, max_line_bytes: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.max_line_bytes = max_line_bytes

    def factory(self) -> SMTP:
        return _NormalisingSMTP(
            self.handler, max_line_bytes=self.max_line_bytes, **self.SMTP_kwargs
        )


class SmtpIntakeHandler:
    def __init__(
        self,
        accept: AcceptFn,
        *,
        domains: tuple[str, ...],
        max_bytes: int,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.accept = accept
        self.domains = tuple(d.lower() for d in domains)
        self.max_bytes = max_bytes
        self.executor = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="smtp-intake")

    def serves(self, address: str) -> bool:
        domain = address.rpartition("@")[2].strip().rstrip(".").lower()
        return bool(domain) and domain in self.domains

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.serves(address):
            return f"550 5.7.1 Relaying denied: {address} is not a domain served here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if len(raw) > self.max_bytes:
            return f"552 5.3.4 Message too big (limit {self.max_bytes} bytes)"
        # As the final delivery agent we record the envelope sender the way an MDA does: an
        # empty one (<>) marks a bounce or notification, which must never get an auto-reply.
        mail_from = (envelope.mail_from or "").strip().removeprefix("<").removesuffix(">")
        raw = b"Return-Path: <" + _header_safe(mail_from) + b">\r\n" + bytes(raw)
        received_at = datetime.now(timezone.utc)
        loop = asyncio.get_running_loop()
        try:
            accepted = await loop.run_in_executor(
                self.executor, self.accept, bytes(raw), list(envelope.rcpt_tos), received_at
            )
        except MessageTooLarge as exc:
            return f"552 5.3.4 {exc}"
        except RejectedMessage as exc:
            return f"554 5.6.0 {exc}"
        except IntakeUnavailable as exc:
            log.error("SMTP intake could not store a message: %s", exc)
            return TEMPORARY_FAILURE
        except Exception:
            log.exception("SMTP intake failed on a message")
            return TEMPORARY_FAILURE
        if accepted.duplicate:
            return f"250 2.0.0 Already have it (intake {accepted.intake_id})"
        return f"250 2.0.0 OK, queued as {accepted.intake_id}"

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session error", exc_info=error)
        return TEMPORARY_FAILURE


def _header_safe(address: str) -> bytes:
    return address.replace("\r", "").replace("\n", "").replace(">", "").encode("utf-8", "replace")


def start_smtp_server(
    handler: SmtpIntakeHandler, *, host: str, port: int, max_line_bytes: int
) -> Controller:
    if max_line_bytes < MIN_MAX_LINE_BYTES:
        raise ValueError(
            f"max_line_bytes={max_line_bytes} would refuse lines RFC 5321 allows; "
            f"use at least {MIN_MAX_LINE_BYTES}"
        )
    controller = _IntakeController(
        handler,
        max_line_bytes=max_line_bytes,
        hostname=host,
        port=port,
        data_size_limit=handler.max_bytes,
        enable_SMTPUTF8=True,
        decode_data=False,
        server_hostname="omnidesk",
        ident="Omnidesk ESMTP",
    )
    controller.start()
    return controller
