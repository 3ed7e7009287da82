"""The ``omnidesk`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from config.settings import Settings, SettingsError, load_settings
from intake.channels import ChannelsError
from omnidesk.errors import CliError

__all__ = ["CliError", "main"]

log = logging.getLogger("omnidesk")

Handler = Callable[[argparse.Namespace, Settings], int]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if level != "DEBUG":
        # aiosmtpd logs every SMTP command at INFO: useful when debugging, noise otherwise.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        # Alembic announces its plugins on import and every migration step at INFO.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _app(settings: Settings, *, migrate_sqlite: bool = True, require_schema: bool = True, **kwargs: Any) -> Any:
    from omnidesk.app import App
    from tickets.migrate import current_revision, head_revision

    from routing.rules import RulesError

    try:
        app = App(settings, **kwargs)
    except RulesError as exc:
        raise CliError("the rules file is invalid; fix it and start again:\n" + "\n".join(exc.errors), 1) from None
    if app.db.is_sqlite and migrate_sqlite:
        app.migrate()
    elif require_schema and current_revision(app.db) != head_revision():
        app.close()
        raise CliError("the database schema is not up to date: run `omnidesk db upgrade` first")
    return app


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


# --- processes ----------------------------------------------------------------------------------
def _serve(components: Sequence[str]) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from omnidesk.processes import serve

        log.info("settings: %s", settings.redacted())
        app = _app(settings)
        return serve(app, components)

    return handler


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from omnidesk.processes import COMPONENTS, serve

    skip = set(args.without or ())
    if "worker" in skip:
        skip.add("rules-watch")
    app = _app(settings)
    broker = type(app.broker).__name__
    log.info("Omnidesk starting: store %s, broker %s", app.db.engine.url.render_as_string(hide_password=True), broker)
    return serve(app, [c for c in COMPONENTS if c not in skip])


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.db import Database
    from tickets.migrate import current_revision, upgrade

    db = Database(settings.effective_database_url)
    upgrade(db)
    print(f"database at revision {current_revision(db)}")
    db.dispose()
    return 0


# --- tickets ---------------------------------------------------------------------------------------
def _read_db(settings: Settings) -> Any:
    from tickets.db import Database

    return Database(settings.effective_database_url)


def cmd_tickets_list(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.queries import count_tickets, list_tickets

    db = _read_db(settings)
    with db.read() as session:
        tickets = list_tickets(session, status=args.status, queue=args.queue, limit=args.limit)
        total = count_tickets(session, status=args.status, queue=args.queue)
    _more(len(tickets), total, "tickets", "--limit")
    if args.json:
        _print_json(tickets)
        return 0
    if not tickets:
        print("no tickets")
        return 0
    print(f"{'REF':<10} {'STATUS':<9} {'PRIORITY':<8} {'QUEUE':<12} {'MSGS':>4}  {'CONTACT':<28} SUBJECT")
    for t in tickets:
        print(
            f"{t['ref']:<10} {t['status']:<9} {t['priority']:<8} {t['queue'][:12]:<12} {t['message_count']:>4}  "
            f"{t['contact'][:28]:<28} {t['subject'][:60]}"
        )
    return 0


def cmd_tickets_show(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.queries import get_ticket

    db = _read_db(settings)
    with db.read() as session:
        ticket = get_ticket(session, args.ref)
    if ticket is None:
        raise CliError(f"no ticket {args.ref} (see `omnidesk tickets list`)", 1)
    if args.json:
        _print_json(ticket)
        return 0
    print(f"{ticket['ref']}  {ticket['subject']}")
    print(f"  status {ticket['status']}, priority {ticket['priority']}, queue {ticket['queue']}, "
          f"assignee {ticket['assignee'] or '-'}, contact {ticket['contact']}")
    for m in ticket["messages"]:
        if m["direction"] == "event":
            print(f"\n    {m['created_at'][:19]}  {m['text']}")
            continue
        who = f" by {m['actor']}" if m.get("actor") and m["actor"] != m["sender"] else ""
        kind = "internal note" if m["direction"] == "note" else f"{m['direction']} via {m['channel']}"
        print(f"\n--- {kind} at {m['created_at']} from {m['sender']}{who}")
        print(m["text"].rstrip())
    return 0


# --- quarantine ------------------------------------------------------------------------------------
def cmd_quarantine_list(args: argparse.Namespace, settings: Settings) -> int:
    from intake.quarantine import describe_rows
    from tickets.queries import count_quarantine, list_quarantine

    app = _app(settings, migrate_sqlite=False, load_rules=False)
    try:
        with app.db.read() as session:
            rows = list_quarantine(session, limit=args.limit)
            total = count_quarantine(session)
        rows = describe_rows(rows, registry=app.registry, blobs=app.blobs)
    finally:
        app.close()
    _more(len(rows), total, "quarantined messages", "--limit")
    if args.json:
        _print_json(rows)
    elif not rows:
        print("quarantine is empty")
    else:
        print(f"{'ID':>7}  {'CHANNEL':<8} {'RECEIVED':<19}  {'SOURCE':<14} {'FROM':<30} {'SUBJECT':<30} REASON")
        for r in rows:
            print(f"{r['id']:>7}  {r['channel']:<8} {r['received_at'][:19]}  {r['source'][:14]:<14} "
                  f"{r['sender'][:30]:<30} {r['subject'][:30]:<30} {r['reason']}")
            if r["reference"]:
                print(f"{'':>9}{r['reference']}")
    return 0


def _more(shown: int, total: int, what: str, flag: str) -> None:
    """Say on stderr when a listing stopped before the end (JSON on stdout stays parseable)."""
    if total > shown:
        print(f"showing {shown} of {total} {what}; use {flag} to see more", file=sys.stderr)


def cmd_quarantine_show(args: argparse.Namespace, settings: Settings) -> int:
    from intake.blobs import FileBlobStore
    from tickets.models import IntakeRow

    db = _read_db(settings)
    with db.read() as session:
        row = session.get(IntakeRow, args.id)
        if row is None:
            raise CliError(f"no intake row {args.id}", 1)
        info = {"id": row.id, "channel": row.channel, "state": row.state, "reason": row.error,
                "external_id": row.external_id, "raw_sha256": row.raw_sha256, "source": row.source,
                "received_at": row.received_at.isoformat(), "attempts": row.attempts,
                "sweeps": row.sweeps, "meta": row.meta, "envelope": row.envelope}
    if args.raw:
        if info["raw_sha256"]:
            sys.stdout.buffer.write(FileBlobStore(settings.blob_dir).get(info["raw_sha256"]))
        return 0
    from intake.quarantine import describe_rows

    app = _app(settings, migrate_sqlite=False, load_rules=False)
    try:
        (described,) = describe_rows([dict(info)], registry=app.registry, blobs=app.blobs)
    finally:
        app.close()
    _print_json(described)
    return 0


def cmd_quarantine_replay(args: argparse.Namespace, settings: Settings) -> int:
    from intake.quarantine import replay
    from tickets.queries import list_quarantine

    app = _app(settings)
    try:
        ids = args.ids
        if args.all:
            with app.db.read() as session:
                ids = [r["id"] for r in list_quarantine(session, limit=100_000)]
        if not ids:
            raise CliError("name intake ids to replay, or --all")
        # With the embedded broker no worker listens to this process: route here and now (the
        # running service's sweeper sends any acknowledgement this creates).
        enqueue = app.route_job if _embedded(app) else app.actors.route_message.send
        failures = 0
        for intake_id in ids:
            outcome = replay(app.intake_log, intake_id, registry=app.registry, enqueue=enqueue)
            failures += outcome.outcome not in ("requeued", "duplicate")
            print(f"{intake_id}: {outcome.outcome}{' - ' + outcome.detail if outcome.detail else ''}")
        return 1 if failures else 0
    finally:
        app.close()


def _embedded(app: Any) -> bool:
    from workers.broker import is_embedded

    return bool(is_embedded(app.broker))


# --- rules --------------------------------------------------------------------------------------------
def cmd_rules_check(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from omnidesk.app import rules_path
    from omnidesk.cli_agents import store_roster
    from routing.rules import check_rules_file

    path = Path(args.file) if args.file else rules_path(settings)
    # The agents the file names are checked against the store's accounts, as warnings only.
    roster, note = store_roster(settings)
    status, text = check_rules_file(path, roster=roster)
    print(text)
    if status == 0 and note:
        print(note)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnidesk", description="Omnichannel support intake and routing.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="everything in one process: HTTP, SMTP, IMAP, worker, sweeper")
    from intake.registry import adapter_classes
    from omnidesk.processes import COMPONENTS

    run.add_argument("--without", action="append", choices=[c for c in COMPONENTS if c != "rules-watch"],
                     help="leave a component out (repeatable)")
    run.set_defaults(handler=cmd_run)
    processes: list[tuple[str, tuple[str, ...], str]] = [
        ("worker", ("worker", "rules-watch"), "a Dramatiq worker (routing, delivery)"),
        ("web", ("web",), "the HTTP server (health, web form, webhooks, API)"),
        ("scheduler", ("sweeper",), "the sweeper: re-enqueue unrouted intake and due deliveries"),
    ]
    # Each channel's edges run alone too (``omnidesk smtp``, ``omnidesk imap``): the Procfile.
    processes += [(name, (name,), text) for cls in adapter_classes() for name, text in cls.components.items()]
    for name, components, text in processes:
        p = sub.add_parser(name, help=text)
        p.set_defaults(handler=_serve(components))

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the database to the latest schema").set_defaults(handler=cmd_db_upgrade)

    tickets = sub.add_parser("tickets", help="look at tickets").add_subparsers(dest="tickets_command", required=True)
    tl = tickets.add_parser("list", help="list tickets, newest first")
    tl.add_argument("--json", action="store_true")
    tl.add_argument("--status")
    tl.add_argument("--queue")
    tl.add_argument("--limit", type=int, default=100)
    tl.set_defaults(handler=cmd_tickets_list)
    ts = tickets.add_parser("show", help="one ticket with its timeline")
    ts.add_argument("ref")
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(handler=cmd_tickets_show)

    quarantine = sub.add_parser("quarantine", help="messages that could not be processed").add_subparsers(
        dest="quarantine_command", required=True)
    ql = quarantine.add_parser("list")
    ql.add_argument("--json", action="store_true")
    ql.add_argument("--limit", type=int, default=100)
    ql.set_defaults(handler=cmd_quarantine_list)
    qs = quarantine.add_parser("show")
    qs.add_argument("id", type=int)
    qs.add_argument("--raw", action="store_true", help="print the raw bytes as received")
    qs.set_defaults(handler=cmd_quarantine_show)
    qr = quarantine.add_parser("replay", help="run quarantined messages through intake again")
    qr.add_argument("ids", type=int, nargs="*")
    qr.add_argument("--all", action="store_true")
    qr.set_defaults(handler=cmd_quarantine_replay)

    rules = sub.add_parser("rules", help="routing rules").add_subparsers(dest="rules_command", required=True)
    rc = rules.add_parser("check", help="validate a rules file (default: OMNIDESK_RULES_FILE)")
    rc.add_argument("file", nargs="?")
    rc.set_defaults(handler=cmd_rules_check)
    _extend_parser(sub, rules, tickets)
    return parser


def _extend_parser(sub: Any, rules: Any, tickets: Any) -> None:
    """Commands that live in their own modules: route explain, rules replay, channels check, the
    agent commands on tickets, agents and contacts."""
    from omnidesk import cli_agents, cli_channels, cli_contacts, cli_routing, cli_tickets

    cli_routing.register(sub, rules)
    cli_channels.register(sub)
    cli_tickets.register(tickets)
    cli_agents.register(sub)
    cli_contacts.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"omnidesk: configuration error: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        status: int = args.handler(args, settings)
        return status
    except CliError as exc:
        print(f"omnidesk: {exc}", file=sys.stderr)
        return exc.status
    except ChannelsError as exc:
        print("omnidesk: the channels file is invalid; fix it and start again:\n" + "\n".join(exc.errors),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
