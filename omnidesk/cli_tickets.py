"""``omnidesk tickets reply|note|assign|status|escalate|merge|tag|link``: an agent's work on the
command line, through the same functions as the API (``tickets.work``, ``tickets.replies``).

Each command acts as an agent (``--as EMAIL``, or ``OMNIDESK_AGENT``), who must exist in the store
(``omnidesk agents add``), so the timeline says who did it. Replies land in the outbox in the same
transaction; the running service sends them (its sweeper picks up due rows within a few seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from config.settings import Settings
from omnidesk.errors import CliError

__all__ = ["register"]

Handler = Callable[[argparse.Namespace, Settings], int]


@contextmanager
def _working(args: argparse.Namespace, settings: Settings) -> Iterator[tuple[Any, Any]]:
    """The App and the acting agent; store errors become one-line CLI errors."""
    from omnidesk.cli import _app
    from tickets.agents import agent_by_email
    from tickets.work import Actor, WorkError

    email = args.actor or os.environ.get("OMNIDESK_AGENT", "")
    if not email:
        raise CliError("say who is acting: --as EMAIL (or set OMNIDESK_AGENT); see `omnidesk agents list`")
    app = _app(settings)
    try:
        with app.db.read() as session:
            agent = agent_by_email(session, email)
        if agent is None or not agent.active:
            raise CliError(f"{email} is not an active agent (add one with `omnidesk agents add NAME EMAIL`)")
        try:
            yield app, Actor(agent.email, agent.name)
        except WorkError as exc:
            raise CliError(exc.message, 1) from None
    finally:
        app.close()


@contextmanager
def _write(app: Any) -> Iterator[Any]:
    """A write transaction that runs the status_changed rules before its commit and hands the
    outbox rows written (``session.info["outbox"]``) to delivery after it."""
    from routing.status_rules import run_status_rules

    with app.db.write() as session:
        session.info["outbox"] = []
        yield session
        ids = (*session.info.pop("outbox"), *run_status_rules(session, app.current_rules(), app.registry))
    _enqueue(app, tuple(ids))


def _done(args: argparse.Namespace, app: Any, ref: str | None, what: str, extra: dict[str, Any] | None = None) -> int:
    from tickets.search import get_ticket_with_timeline

    with app.db.read() as session:
        ticket = get_ticket_with_timeline(session, ref or args.ref)
    assert ticket is not None
    if args.json:
        from omnidesk.cli import _print_json

        out = {k: v for k, v in ticket.items() if k != "messages"}
        out.update(extra or {})
        _print_json(out)
    else:
        print(f"{ticket['ref']}: {what} (status {ticket['status']}, queue {ticket['queue']}, "
              f"assignee {ticket['assignee'] or '-'}, version {ticket['version']})")
    return 0


def _enqueue(app: Any, ids: tuple[int, ...]) -> None:
    """With a real broker hand the rows to a worker now; otherwise the service's sweeper sends them."""
    from workers.broker import is_embedded

    if not is_embedded(app.broker):
        for outbox_id in ids:
            app.actors.deliver_outbox.send(outbox_id)


def _text(args: argparse.Namespace) -> str:
    text: str = args.text if args.text is not None else sys.stdin.read()
    if not text.strip():
        raise CliError("give the text as an argument, or on standard input with -")
    return text


def cmd_reply(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.replies import send_reply

    with _working(args, settings) as (app, actor):
        with _write(app) as session:
            replied = send_reply(session, args.ref, _text(args), actor, app.registry, channel=args.channel,
                                 status_after=None if args.keep_status else args.status)
            session.info["outbox"].append(replied.outbox_id)
            ref = replied.ticket.ref
        return _done(args, app, ref, f"reply to {replied.recipient} via {replied.channel} queued",
                     {"outbox_id": replied.outbox_id, "message_id": replied.idempotency_key})


def cmd_note(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.work import add_note

    with _working(args, settings) as (app, actor):
        with _write(app) as session:
            ticket, note_id = add_note(session, args.ref, _text(args), actor)
            ref = ticket.ref
        return _done(args, app, ref, "internal note added", {"note_id": note_id})


def _change(what: str, **fields: Any) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        from tickets.work import TicketChange, change_ticket

        values = {name: (getattr(args, attr) if isinstance(attr, str) else attr(args)) for name, attr in fields.items()}
        if TicketChange(**values).is_empty():
            raise CliError(f"nothing to change; see `omnidesk tickets {args.tickets_command} --help`")
        with _working(args, settings) as (app, actor):
            with _write(app) as session:
                ticket = change_ticket(session, args.ref, TicketChange(**values), actor)
                ref = ticket.ref
            return _done(args, app, ref, what)

    return handler


def cmd_escalate(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.work import escalate

    with _working(args, settings) as (app, actor):
        with _write(app) as session:
            ticket = escalate(session, args.ref, queue=args.queue, reason=args.reason, actor=actor,
                              priority=args.priority)
            ref = ticket.ref
        return _done(args, app, ref, f"escalated to {args.queue}")


def cmd_merge(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.work import merge_tickets

    with _working(args, settings) as (app, actor):
        with _write(app) as session:
            target = merge_tickets(session, args.ref, args.into, actor)
            ref = target.ref
        return _done(args, app, ref, f"{args.ref.upper()} merged into it")


def cmd_link(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.work import link_tickets

    with _working(args, settings) as (app, actor):
        with _write(app) as session:
            link_tickets(session, args.ref, args.other, actor)
        return _done(args, app, args.ref, f"linked to {args.other.upper()}")


def register(tickets: Any) -> None:
    """Add the agent's commands to ``omnidesk tickets``."""
    def command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = tickets.add_parser(name, help=help_text)
        p.add_argument("ref", help="the ticket, e.g. OD-1042")
        p.add_argument("--as", dest="actor", metavar="EMAIL", help="the acting agent (default: $OMNIDESK_AGENT)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=handler)
        return p

    statuses = ["open", "pending", "escalated", "resolved", "closed"]
    p = command("reply", "a public reply, sent through the customer's channel", cmd_reply)
    p.add_argument("text", nargs="?", help="the reply (default: read standard input)")
    p.add_argument("--channel", help="reply through this channel instead (e.g. email)")
    p.add_argument("--status", choices=statuses, default="pending", help="status afterwards (default pending)")
    p.add_argument("--keep-status", action="store_true", help="leave the status as it is")
    p = command("note", "an internal note, never sent to the customer", cmd_note)
    p.add_argument("text", nargs="?", help="the note (default: read standard input)")
    p = command("assign", "assign to an agent (or --none to unassign)",
                _change("assigned", assignee=lambda a: "" if a.none else a.agent))
    p.add_argument("agent", nargs="?", help="the agent's email")
    p.add_argument("--none", action="store_true", help="unassign")
    p = command("status", "change the status", _change("status changed", status="status", reason="reason"))
    p.add_argument("status", choices=statuses)
    p.add_argument("--reason", help="shown on the timeline with the change")
    p = command("priority", "change the priority", _change("priority changed", priority="priority"))
    p.add_argument("priority", choices=["low", "normal", "high", "urgent"])
    p = command("escalate", "escalate to another queue with a reason", cmd_escalate)
    p.add_argument("queue")
    p.add_argument("--reason", required=True)
    p.add_argument("--priority", choices=["low", "normal", "high", "urgent"])
    p = command("merge", "merge this ticket into another", cmd_merge)
    p.add_argument("into", help="the ticket to merge into")
    p = command("link", "link a related ticket", cmd_link)
    p.add_argument("other")
    p = command("tag", "add or remove tags", _change("tags changed", add_tags="add", remove_tags="remove"))
    p.add_argument("add", nargs="*", metavar="TAG", help="tags to add")
    p.add_argument("--remove", action="append", default=[], metavar="TAG", help="a tag to remove (repeatable)")
