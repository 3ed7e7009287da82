"""One outbound sender per channel, all with the shape of ``workers.outbox.Sender``.

Each module here offers ``senders(settings, blobs) -> {channel: Sender}`` for the channels it can
send on with these settings; ``build_senders`` collects them, so a new channel's sender is a new
module and nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from workers.senders.email import FileDropSender, SmtpSender, compose_email, email_sender_from_url

__all__ = ["FileDropSender", "SmtpSender", "build_senders", "compose_email", "email_sender_from_url"]


def build_senders(settings: Any, blobs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        factory = getattr(module, "senders", None)
        if callable(factory):
            for channel, sender in factory(settings, blobs).items():
                found.setdefault(channel, sender)
    return found
