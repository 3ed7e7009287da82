"""IMAP intake: poll the mailboxes of the channels file into the intake log.

    connection.py  log in (TLS / STARTTLS / localhost plain), describe failures, probe a mailbox
    state.py       the database side: folder checkpoints (UIDVALIDITY + last UID) and leases
    poller.py      ImapPoller: one mailbox folder, IDLE or polling, acknowledge after commit

``start_pollers(app, stop_event)`` is what ``omnidesk imap`` and ``omnidesk run`` call: one thread
per configured mailbox, or None when the channels file configures none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from intake.channels import ChannelsConfig, ChannelsError, ImapMailbox, configured_channels
from intake.imap.poller import ImapPoller, PollerStats, holder_id
from intake.imap.state import Checkpoints, Lease, LeaseLost

if TYPE_CHECKING:
    from omnidesk.app import App

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
    app: App,
    stop_event: threading.Event | None = None,
    *,
    channels: ChannelsConfig | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> Callable[[], None] | None:
    """Start one poller thread per mailbox of the channels file; None when there is none.

    Raises ``ChannelsError`` (every problem, with file positions) when the channels file is invalid
    or a password variable is missing: the service must not start half-configured. ``options``
    go to each ``ImapPoller`` (batch_size, lease_seconds, tick, ...).
    """
    try:
        config = channels if channels is not None else configured_channels(app.settings, environ=environ)
    except ChannelsError as exc:
        log.error("%s", exc)
        raise
    if not config.imap:
        log.debug("no IMAP mailboxes configured")
        return None
    pollers = [
        build_poller(app, mailbox, environ=environ, stop_events=(stop_event,) if stop_event else (), **options)
        for mailbox in config.imap
    ]
    group = PollerGroup(pollers).start()
    log.info("IMAP pollers started for %s", ", ".join(p.name for p in pollers))
    return group


def build_poller(
    app: App, mailbox: ImapMailbox, *, environ: Mapping[str, str] | None = None, **options: Any
) -> ImapPoller:
    return ImapPoller(
        mailbox,
        password=mailbox.password(environ),
        accept=app.accept_email,
        db=app.db,
        **options,
    )
