"""The SMTP edge: an aiosmtpd handler that only says yes once the message is durable.

The handler is thin: it checks recipients against the domains we serve (never an open relay),
hands the bytes to ``accept`` in a thread (the database is blocking I/O), and maps the outcome
to SMTP replies. Any failure is a ``451 4.3.0`` so the sending server retries; aiosmtpd's own
default for an exception, ``500``, would make it bounce the customer's mail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from aiosmtpd.controller import Controller

from intake.errors import IntakeUnavailable, MessageTooLarge, RejectedMessage
from intake.log import Accepted

__all__ = ["SmtpIntakeHandler", "start_smtp_server"]

log = logging.getLogger(__name__)

AcceptFn = Callable[[bytes, list[str], datetime], Accepted]

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"


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


def start_smtp_server(handler: SmtpIntakeHandler, *, host: str, port: int) -> Controller:
    controller = Controller(
        handler,
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
