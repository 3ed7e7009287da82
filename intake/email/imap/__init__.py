"""IMAP intake: poll the mailboxes of the channels file into the intake log.

    connection.py  log in (TLS / STARTTLS / localhost plain), describe failures, probe a mailbox
    state.py       the database side: folder checkpoints (UIDVALIDITY + last UID) and leases
    poller.py      ImapPoller: one mailbox folder, IDLE or polling, acknowledge after commit
    check.py       ``channels check``: log in to each mailbox read-only and report what is there

``start_pollers(mailboxes, accept=..., db=...)`` is what the email adapter's ``imap`` runner calls
(``omnidesk imap``, ``omnidesk run``): one thread per configured mailbox, or None when the
channels file configures none.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from intake.channels import ChannelsError

if TYPE_CHECKING:
    from intake.email.imap.poller import Accept, ImapPoller, PollerStats, holder_id
    from intake.email.imap.settings import ImapMailbox
    from intake.email.imap.state import Checkpoints, Lease, LeaseLost
    from tickets.db import Database

# The poller and its IMAP client load only when a mailbox is polled: every process imports this
# package through the email adapter, and most never poll (imapclient and imaplib cost ~1.2 MiB).
_LAZY = {"ImapPoller": "poller", "PollerStats": "poller", "holder_id": "poller", "Accept": "poller",
         "Checkpoints": "state", "Lease": "state", "LeaseLost": "state"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

__all__ = [
    "Checkpoints",
    "ImapPoller",
    "Lease",
    "LeaseLost",
    "PollerGroup",
    "PollerStats",
    "holder_id",
    "start_pollers",
]

log = logging.getLogger(__name__)

JOIN_SECONDS = 15.0


class PollerGroup:
    """Running pollers, one thread each; calling the group stops and joins them all."""

    def __init__(self, pollers: list[ImapPoller]) -> None:
        self.pollers = pollers
        self.threads: list[threading.Thread] = []

    def start(self) -> PollerGroup:
        for poller in self.pollers:
            thread = threading.Thread(target=poller.run, name=f"imap-{poller.name}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __getitem__(self, name: str) -> ImapPoller:
        for poller in self.pollers:
            if poller.name == name:
                return poller
        raise KeyError(name)

    def stop(self, timeout: float = JOIN_SECONDS) -> None:
        for poller in self.pollers:
            poller.stop()
        for thread in self.threads:
            thread.join(timeout=timeout)
            if thread.is_alive():
                log.warning("IMAP poller thread %s did not stop within %.0f s", thread.name, timeout)

    def __call__(self) -> None:
        self.stop()


def start_pollers(
    mailboxes: list[ImapMailbox],
    *,
    accept: Accept,
    db: Database,
    stop_event: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> Callable[[], None] | None:
    """Start one poller thread per mailbox; None when there is none.

    Raises ``ChannelsError`` when a password variable is missing: the service must not start
    half-configured. ``options`` go to each ``ImapPoller`` (batch_size, lease_seconds, tick, ...).
    """
    if not mailboxes:
        log.debug("no IMAP mailboxes configured")
        return None
    try:
        pollers = [
            build_poller(mailbox, accept=accept, db=db, environ=environ,
                         stop_events=(stop_event,) if stop_event else (), **options)
            for mailbox in mailboxes
        ]
    except ChannelsError as exc:
        log.error("%s", exc)
        raise
    group = PollerGroup(pollers).start()
    log.info("IMAP pollers started for %s", ", ".join(p.name for p in pollers))
    return group


def build_poller(
    mailbox: ImapMailbox, *, accept: Accept, db: Database, environ: Mapping[str, str] | None = None, **options: Any
) -> ImapPoller:
    from intake.email.imap.poller import ImapPoller

    return ImapPoller(mailbox, password=mailbox.password(environ), accept=accept, db=db, **options)
