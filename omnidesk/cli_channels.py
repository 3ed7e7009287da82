"""``omnidesk channels check``: validate the channels file and have every channel check its accounts.

The command knows no channel: it loads the file, builds the adapters from the registry with only
their settings and section, and prints what each adapter's ``probe`` reports under its own
heading (IMAP mailboxes logged in to, read-only; web forms with their addresses and allowed
origins; whatever a new channel package reports). Exit status 1 when the file is invalid or any
account failed, so a deploy script can run it.

Wired into ``omnidesk/cli.py`` with ``cli_channels.register(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config.settings import Settings

__all__ = ["cmd_channels_check", "register"]

DEFAULT_TIMEOUT = 20.0


def register(subparsers: Any) -> None:
    """Add ``channels check`` to the ``omnidesk`` command's subparsers."""
    channels = subparsers.add_parser("channels", help="the channels file (IMAP mailboxes, web forms, ...)")
    commands = channels.add_subparsers(dest="channels_command", required=True)
    check = commands.add_parser(
        "check",
        help="validate the channels file and check every channel's accounts: log in to each "
        "mailbox, list the web forms (default: OMNIDESK_CHANNELS_FILE)",
    )
    check.add_argument("file", nargs="?", help="channels file to check instead of OMNIDESK_CHANNELS_FILE")
    check.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds to wait for each server (default {DEFAULT_TIMEOUT:.0f})")
    check.add_argument("--offline", action="store_true", help="only validate the file; connect to nothing")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=cmd_channels_check)


def cmd_channels_check(args: argparse.Namespace, settings: Settings) -> int:
    from intake.channels import ChannelsConfig, ChannelsError, channels_path, load_channels
    from intake.registry import Registry

    path = Path(args.file) if args.file else channels_path(settings)
    note = None
    if path is None:
        # No file: no accounts of their own, but channels may still serve something (the
        # built-in web form), which is worth showing.
        config = ChannelsConfig()
        note = (f"no channels file at {settings.channels_file}: no channels configured "
                "(copy config/channels.example.yaml to start)")
    else:
        try:
            config = load_channels(path, check_env=False)
        except ChannelsError as exc:
            if args.json:
                _print_json({"file": str(path), "ok": False, "errors": exc.errors})
            else:
                print(f"{path}: invalid")
                for line in exc.errors:
                    print(f"  {line}")
            return 1

    registry = Registry.configuration_only(settings, config)
    reports = [r for a in registry if (r := a.probe(connect=not args.offline, timeout=args.timeout))]
    failed = sum(r.failed for r in reports)
    total = sum(len(r.accounts) for r in reports)
    shown = str(path if path is not None else settings.channels_file)
    if args.json:
        data: dict[str, Any] = {"file": shown, "ok": failed == 0}
        if note:
            data["note"] = note
        for report in reports:
            data[report.key] = [account.as_json() for account in report.accounts]
        _print_json(data)
        return 1 if failed else 0
    if note:
        print(note)
    prefix = f"{path}: " if path is not None else ""
    for report in reports:
        print(f"{prefix}{report.heading()}")
        width = max((len(a.name) for a in report.accounts), default=0)
        for account in report.accounts:
            print(f"  {account.name:<{width}}  {'OK' if account.ok else 'FAILED':<6}  {account.text}")
    if failed:
        print(f"{failed} of {total} failed")
    return 1 if failed else 0


def _say(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        _print_json(data)
    else:
        print(text)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
