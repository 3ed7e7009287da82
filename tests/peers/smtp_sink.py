"""An aiosmtpd server that records every message it receives: the outbound SMTP peer in tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.peers import free_port

__all__ = ["ReceivedMail", "SmtpSink"]


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpSink:
    """Start with ``start()``; ``url`` is what OMNIDESK_OUTBOUND_SMTP_URL should be.

    ``fail_next`` makes the next N deliveries get a temporary ``451`` (to test retries).
    """

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    received: list[ReceivedMail] = field(default_factory=list)
    fail_next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return "451 4.3.0 sink says try later"
            self.received.append(
                ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content))
            )
        return "250 OK"

    def start(self) -> "SmtpSink":
        self._controller = Controller(self, hostname=self.host, port=self.port, decode_data=False)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} mails at the sink within {timeout}s, got {len(self.received)}")
