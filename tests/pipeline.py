"""A whole Omnidesk pipeline inside a test: App + worker + SMTP intake on free ports."""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from typing import Any

import dramatiq

from config.settings import Settings
from omnidesk.app import App
from omnidesk.processes import Running
from tests.peers import free_port
from tickets.queries import get_ticket, list_tickets

__all__ = ["Pipeline", "make_mail"]


def make_mail(
    *,
    sender: str = "Ana Customer <ana@customer.test>",
    to: str = "support@example.com",
    subject: str = "My order never arrived",
    body: str = "Hello, my order 1234 never arrived. Can you help?",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = format_datetime(datetime.now(timezone.utc))
    mail["Message-ID"] = message_id or make_msgid(domain="customer.test")
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    return mail


class Pipeline:
    """Start with ``start(components)``; always ``stop()`` (the fixtures do)."""

    def __init__(self, settings: Settings, *, broker: dramatiq.Broker | None = None, **app_kwargs: Any) -> None:
        self.settings = settings.model_copy(update={"smtp_port": free_port(), "http_port": free_port()})
        self.app = App(self.settings, broker=broker, **app_kwargs)
        self.app.migrate()
        self.running = Running(self.app)

    def start(self, components: tuple[str, ...] = ("worker", "sweeper", "smtp")) -> "Pipeline":
        self.running.start(components)
        return self

    def stop(self) -> None:
        self.running.stop()
        self.app.close()

    # --- acting as a customer -------------------------------------------------------------
    def send(self, mail: EmailMessage, *, rcpt: list[str] | None = None) -> dict[str, Any]:
        with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port, timeout=30) as client:
            return client.send_message(mail, to_addrs=rcpt)  # type: ignore[return-value]

    # --- looking at the result -------------------------------------------------------------
    def tickets(self) -> list[dict[str, Any]]:
        with self.app.db.read() as session:
            return list_tickets(session, limit=100_000)

    def ticket(self, ref: str) -> dict[str, Any]:
        with self.app.db.read() as session:
            found = get_ticket(session, ref)
        assert found is not None, f"no ticket {ref}"
        return found

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_for_messages(self, total: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until the tickets hold ``total`` inbound+outbound messages altogether."""
        self.wait_until(lambda: sum(t["message_count"] for t in self.tickets()) >= total, timeout,
                        f"{total} ticket messages")
        return self.tickets()

    def wait_routed(self, timeout: float = 30.0) -> None:
        from sqlalchemy import func, select

        from tickets.models import IntakeRow

        def done() -> bool:
            with self.app.db.read() as session:
                return session.execute(
                    select(func.count()).select_from(IntakeRow).where(IntakeRow.state == "pending")
                ).scalar_one() == 0

        self.wait_until(done, timeout, "every intake row routed")


def unique_id(domain: str = "customer.test") -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def assert_threaded_like(app: App, manifest: dict[str, Any], *, expected_messages: int) -> None:
    """Every conversation of a corpus manifest is exactly one ticket holding exactly its messages."""
    from tickets.models import TicketMessage

    with app.db.read() as session:
        rows = session.query(TicketMessage.ticket_id, TicketMessage.message_id).filter(
            TicketMessage.direction == "inbound"
        ).all()
    by_ticket: dict[int, list[str]] = {}
    for ticket_id, message_id in rows:
        by_ticket.setdefault(ticket_id, []).append(message_id)
    assert len(rows) == expected_messages, f"{len(rows)} messages stored, {expected_messages} expected once each"
    assert all(len(ids) == len(set(ids)) for ids in by_ticket.values()), "a message stored twice on a ticket"
    expected = {frozenset(t["messages"]) for t in manifest["threads"].values()}
    got = {frozenset(ids) for ids in by_ticket.values()}
    wrong = expected ^ got
    assert not wrong, f"{len(wrong)} conversations split or merged"
    assert len(by_ticket) == len(manifest["threads"])
