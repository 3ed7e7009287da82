"""``omnidesk channels check`` for IMAP mailboxes: log in to each, read-only, and say what is there.

For each mailbox of the channels file: log in, look at the folder (nothing changes on the
server) and report OK with the message count, UIDVALIDITY and whether the server offers IDLE
and MOVE, or the error. Offline, only the password variable is checked. The email adapter's
``probe`` calls ``check_mailboxes``; the command itself knows no channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from intake.adapter import AccountCheck, ChannelReport
from intake.channels import ChannelsError
from intake.email.imap.connection import ProbeResult, probe
from intake.email.imap.settings import ImapMailbox

__all__ = ["check_mailboxes"]

# Logins run side by side (a slow server must not hold up the rest), but not so many at once
# that a long list of mailboxes on one host looks like an attack to it.
MAX_PARALLEL_LOGINS = 8


def check_mailboxes(mailboxes: Sequence[ImapMailbox], *, connect: bool, timeout: float) -> ChannelReport:
    def check_one(mailbox: ImapMailbox) -> ProbeResult:
        try:
            password = mailbox.password()
        except ChannelsError as exc:
            return ProbeResult(mailbox, error=exc.errors[0].split(": ", 1)[-1])
        if not connect:
            return ProbeResult(mailbox, ok=True, notes=["not connected (--offline)"])
        return probe(mailbox, password, timeout=timeout)

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_LOGINS, len(mailboxes)))) as pool:
        results = list(pool.map(check_one, mailboxes))
    return ChannelReport(
        key="mailboxes",
        kind=("IMAP mailbox", "IMAP mailboxes"),
        accounts=tuple(
            AccountCheck(r.mailbox.name, r.ok, _text(r), _details(r)) for r in results
        ),
    )


def _text(result: ProbeResult) -> str:
    box = result.mailbox
    if not result.ok:
        return f"{box.describe()}: {result.error}"
    if result.messages is None:
        return f"{box.describe()} ({'; '.join(result.notes)})"
    caps = result.capabilities
    idle = bool(caps and caps.idle)
    waiting = "" if idle and box.idle else f" (polling every {box.poll_seconds:g} s)"
    parts = [
        f"{result.messages} message{'s' if result.messages != 1 else ''} ({result.unseen} unseen)",
        f"UIDVALIDITY {result.uidvalidity}",
        f"IDLE {'yes' if idle else 'no'}{', off in the file' if idle and not box.idle else ''}{waiting}",
        f"MOVE {'yes' if caps and caps.move else 'no'}",
    ]
    if box.move_to is not None:
        parts.append(f"move_to {box.move_to} {'exists' if result.move_to_exists else 'will be created'}")
    else:
        parts.append("imported mail is flagged \\Seen")
    return f"{box.describe()}: " + ", ".join(parts)


def _details(result: ProbeResult) -> dict[str, Any]:
    box = result.mailbox
    caps = result.capabilities
    return {
        "host": box.host,
        "port": box.effective_port,
        "security": box.security,
        "username": box.username,
        "folder": box.folder,
        "error": result.error or None,
        "messages": result.messages,
        "unseen": result.unseen,
        "uidvalidity": result.uidvalidity,
        "idle": caps.idle if caps else None,
        "move": caps.move if caps else None,
        "move_to": box.move_to,
        "move_to_exists": result.move_to_exists,
        "notes": result.notes,
    }
