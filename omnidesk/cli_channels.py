"""``omnidesk channels check``: validate the channels file and log in to every mailbox it names.

For each IMAP mailbox: log in, look at the folder (read-only, nothing changes on the server) and
report OK with the message count, UIDVALIDITY and whether the server offers IDLE and MOVE, or the
error. Exit status 1 when the file is invalid or any mailbox failed, so a deploy script can run it.

Wired into ``omnidesk/cli.py`` with ``cli_channels.register(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from config.settings import Settings

__all__ = ["cmd_channels_check", "register"]

DEFAULT_TIMEOUT = 20.0


def register(subparsers: Any) -> None:
    """Add ``channels check`` to the ``omnidesk`` command's subparsers."""
    channels = subparsers.add_parser("channels", help="the channels file (IMAP mailboxes, ...)")
    commands = channels.add_subparsers(dest="channels_command", required=True)
    check = commands.add_parser(
        "check",
        help="validate the channels file and log in to every mailbox (default: OMNIDESK_CHANNELS_FILE)",
    )
    check.add_argument("file", nargs="?", help="channels file to check instead of OMNIDESK_CHANNELS_FILE")
    check.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds to wait for each server (default {DEFAULT_TIMEOUT:.0f})")
    check.add_argument("--offline", action="store_true", help="only validate the file; connect to nothing")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=cmd_channels_check)


def cmd_channels_check(args: argparse.Namespace, settings: Settings) -> int:
    from intake.channels import ChannelsError, channels_path, load_channels
    from intake.email.imap.connection import ProbeResult, probe

    path = Path(args.file) if args.file else channels_path(settings)
    if path is None:
        _say(args, {"file": str(settings.channels_file), "ok": True, "mailboxes": [],
                    "note": "no channels file: no channels configured"},
             f"no channels file at {settings.channels_file}: no channels configured "
             "(copy config/channels.example.yaml to start)")
        return 0
    try:
        config = load_channels(path, check_env=False)
    except ChannelsError as exc:
        if args.json:
            _print_json({"file": str(path), "ok": False, "errors": exc.errors, "mailboxes": []})
        else:
            print(f"{path}: invalid")
            for line in exc.errors:
                print(f"  {line}")
        return 1

    def check_one(mailbox: Any) -> ProbeResult:
        try:
            password = mailbox.password()
        except ChannelsError as exc:
            return ProbeResult(mailbox, error=exc.errors[0].split(": ", 1)[-1])
        if args.offline:
            return ProbeResult(mailbox, ok=True, notes=["not connected (--offline)"])
        return probe(mailbox, password, timeout=args.timeout)

    mailboxes = config.imap
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(mailboxes)))) as pool:
        results = list(pool.map(check_one, mailboxes))
    failed = sum(1 for r in results if not r.ok)
    if args.json:
        _print_json({"file": str(path), "ok": failed == 0, "mailboxes": [_as_dict(r) for r in results]})
    else:
        count = len(results)
        print(f"{path}: {count} IMAP mailbox{'es' if count != 1 else ''}")
        width = max((len(r.mailbox.name) for r in results), default=0)
        for result in results:
            print(_line(result, width))
        if failed:
            print(f"{failed} of {count} failed")
    return 1 if failed else 0


def _line(result: Any, width: int) -> str:
    box = result.mailbox
    head = f"  {box.name:<{width}}  "
    if not result.ok:
        return f"{head}FAILED  {box.describe()}: {result.error}"
    if result.messages is None:
        return f"{head}OK      {box.describe()} ({'; '.join(result.notes)})"
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
    return f"{head}OK      {box.describe()}: " + ", ".join(parts)


def _as_dict(result: Any) -> dict[str, Any]:
    box = result.mailbox
    caps = result.capabilities
    return {
        "name": box.name,
        "host": box.host,
        "port": box.effective_port,
        "security": box.security,
        "username": box.username,
        "folder": box.folder,
        "ok": result.ok,
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


def _say(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        _print_json(data)
    else:
        print(text)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
