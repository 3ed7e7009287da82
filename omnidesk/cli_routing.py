"""``omnidesk route explain`` and ``omnidesk rules replay``: routing rules an admin can trust.

Both are read-only: they never write a row, a blob or a file. The store access lives in
``routing.explain_stored``; the rule logic in ``routing.rules`` (``RuleSet.explain``, ``replay``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from omnidesk.cli import _print_json
from omnidesk.errors import CliError

if TYPE_CHECKING:
    from intake.envelope import Envelope
    from routing.explain_stored import ThreadPreview
    from routing.rules import Explanation, RuleSet
    from tickets.db import Database

__all__ = ["parse_window", "register"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


Handler = Callable[[argparse.Namespace, Settings], int]


# --- argument types --------------------------------------------------------------------------------
def parse_window(text: str) -> dt.timedelta | None:
    """``30d``, ``24h``, ``90m``, ``2w``, ``45s`` → a timedelta; ``all`` → None (no limit)."""
    if text.strip().lower() == "all":
        return None
    found = _WINDOW.match(text)
    if not found or int(found.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 30d, 24h, 90m, 2w (or 'all')"
        )
    return dt.timedelta(**{_UNITS[found.group(2).lower()]: int(found.group(1))})


def _instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date and time: write ISO 8601, e.g. 2026-03-02T18:30+01:00"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # naive means UTC


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of samples (0 or more)")
    return value


# --- shared helpers --------------------------------------------------------------------------------
def _load_rules(path: Path, what: str) -> RuleSet:
    from routing.rules import RulesError, load_rules

    try:
        return load_rules(path)
    except RulesError as exc:
        count = len(exc.errors)
        raise CliError(
            f"the {what} file {path} is invalid ({count} error{'s' if count != 1 else ''}):\n"
            + "\n".join(exc.errors),
            1,
        ) from None


def _store(settings: Settings) -> Database | None:
    from sqlalchemy.exc import SQLAlchemyError

    from routing.explain_stored import open_store

    try:
        return open_store(settings.effective_database_url)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot open the store: {getattr(exc, 'orig', None) or exc}", 1) from None


def _safe_url(settings: Settings) -> str:
    """The database URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    from tickets.db import normalise_url

    return make_url(normalise_url(settings.effective_database_url)).render_as_string(
        hide_password=True
    )


def _store_name(db: Database | None, settings: Settings) -> str | None:
    if db is None:
        return None
    return db.engine.url.render_as_string(hide_password=True)


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- route explain ---------------------------------------------------------------------------------
def cmd_route_explain(args: argparse.Namespace, settings: Settings) -> int:
    from omnidesk.app import rules_path

    if (args.message is None) == (args.ticket is None):
        raise CliError("name one message: an .eml file, - for standard input, or --ticket REF")
    if args.ticket is not None and args.at is not None:
        raise CliError(
            "--at applies to a message file; a stored ticket is explained with its stored facts"
        )
    ruleset = _load_rules(Path(args.rules) if args.rules else rules_path(settings), "rules")
    db = _store(settings)
    try:
        if args.ticket is not None:
            data, head, tail = _explain_ticket(db, ruleset, args.ticket, settings)
        else:
            data, head, tail = _explain_file(db, ruleset, args.message, settings, args.at,
                                             getattr(args, "channel", None))
    finally:
        if db is not None:
            db.dispose()
    explanation: Explanation | None = data.pop("_explanation")
    if args.json:
        _print_json(data)
        return 0
    body = explanation.to_text() if explanation is not None else ""
    sys.stdout.write(
        "\n".join(head) + "\n\n" + body + ("\n" if body else "") + "\n".join(tail) + "\n"
    )
    return 0


def _result(
    explanation: Explanation | None, extra: dict[str, Any], *, event: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {**extra}
    if explanation is not None:
        data.update(explanation.to_dict())
    else:
        data.update({"event": event, "rules": [], "applied": [], "actions": None})
    data["_explanation"] = explanation
    return data


def _explain_file(
    db: Database | None, ruleset: RuleSet, name: str, settings: Settings, at: dt.datetime | None,
    channel: str | None = None,
) -> tuple[dict[str, Any], list[str], list[str]]:
    from intake.adapter import AdapterContext, Payload
    from intake.errors import UnparseableMessage
    from intake.registry import Registry
    from routing.decide import Policy, decide
    from routing.explain_stored import MemoryBlobStore, directory_facts, thread_preview
    from routing.situation import Situation, look_up

    shown = "standard input" if name == "-" else name
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {shown}: {exc.strerror or exc}", 1) from None
    now = at or dt.datetime.now(dt.UTC)

    def no_ingest(payload: Payload) -> Any:
        raise RuntimeError("route explain stores nothing")

    # Attachments and the raw bytes go to a blob store in memory: explain writes no file.
    registry = Registry.build(lambda cls: AdapterContext(settings, db, MemoryBlobStore(), ingest=no_ingest))  # type: ignore[arg-type]
    channel = channel or _channel_of(raw, registry)
    try:
        envelope = registry.parse(Payload(channel=channel, raw=raw, received_at=now, source="explain"))
    except UnparseableMessage as exc:
        raise CliError(f"cannot parse {shown} as a {channel} payload: {exc.reason}", 1) from None

    ours = registry.identities().owns(envelope.sender)
    policy = Policy(auto_reply_limit_per_hour=settings.auto_reply_limit_per_hour,
                    closed_ticket_reply=settings.closed_ticket_reply,
                    conversation_reopen_days=settings.conversation_reopen_days)
    thread: ThreadPreview | None = None
    explanation: Explanation | None = None
    acknowledgement: dict[str, Any] | None = None
    if db is None:
        situation = Situation(now=now, thread=None, ticket=None, linked_ref=None, contact=None,
                              facts=directory_facts(envelope, ruleset, now=now),
                              auto_replies_last_hour=0, ours=ours)
        decision = decide(envelope, situation, ruleset, policy)
        explanation = ruleset.explain(envelope, situation.facts)
        acknowledgement = _acknowledgement(decision)
    else:
        with db.read() as session:
            # The router's own look-up and decision, on a read-only session.
            situation = look_up(session, envelope, ruleset, now=now,
                                foreign_token_policy=settings.foreign_token_policy, ours=ours)
            decision = decide(envelope, situation, ruleset, policy)
            thread = thread_preview(session, envelope, situation)
            if not (thread.match is not None and thread.is_bounce):
                explanation = ruleset.explain(envelope, situation.facts)
                if thread.match is None:
                    acknowledgement = _acknowledgement(decision)

    head = [f"Explaining {shown}: {envelope.subject!r} from {envelope.sender.address}"]
    head.append("Thread:   " + _thread_text(thread))
    if db is None:
        head.append(
            f"Facts:    at {_when(now)}; no store at {_safe_url(settings)}, so no contact "
            "history: directory facts from the rules file and the detected language only"
        )
    else:
        head.append(
            f"Facts:    gathered as the router would at {_when(now)} (contact history from the store)"
        )
    if thread is not None and thread.stored_as is not None:
        intake_id, stored_ref = thread.stored_as
        where = f"on {stored_ref}" if stored_ref else "not routed yet"
        head.append(
            f"Note:     this very message is in the store already (intake {intake_id}, {where}); a new "
            "delivery of it would be dropped as a duplicate"
            + (
                f". `omnidesk route explain --ticket {stored_ref}` shows how it was routed"
                if stored_ref
                else ""
            )
        )
    tail: list[str] = []
    if acknowledgement is not None:
        tail.append("Acknowledgement: " + acknowledgement["text"])
    if thread is not None and thread.match is not None and thread.is_bounce:
        tail.append(
            f"A delivery failure report on {thread.match.ticket_ref}: the router marks the bounced "
            "message failed and runs no rules."
        )
    data = _result(
        explanation,
        {
            "input": {
                "kind": "message",
                "name": shown,
                "subject": envelope.subject,
                "from": envelope.sender.address,
            },
            "store": _store_name(db, settings),
            "facts_source": "store" if db is not None else "directory",
            "evaluated_at": now.isoformat(),
            "thread": None if thread is None else thread.to_dict(),
            "already_stored": None if thread is None else thread.stored_dict(),
            "acknowledgement": None
            if acknowledgement is None
            else {k: v for k, v in acknowledgement.items() if k != "text"},
        },
        event="bounce",
    )
    return data, head, tail


def _thread_text(thread: ThreadPreview | None) -> str:
    if thread is None:
        return "not checked: there is no store yet, so it would open a new ticket"
    if thread.match is not None:
        m = thread.match
        status = (thread.ticket or {}).get("status")
        return (
            f"follow-up of {m.ticket_ref} (status {status}), via {m.via} {m.key}: "
            "explained with the follow_up rules"
        )
    looked = f"none of its {len(thread.keys)} thread key(s) is known"
    if thread.linked_ref:
        return (
            f"new ticket: it names {thread.linked_ref}, but the sender is not on that ticket, "
            "so it would open a linked ticket"
        )
    if thread.ticket_refs:
        looked += (
            f", and the ticket number(s) it names ({', '.join(thread.ticket_refs)}) do not exist"
        )
    return f"new ticket ({looked})"


def _channel_of(raw: bytes, registry: Any) -> str:
    """The channel of a payload file: a stored webhook or form payload names its own (a JSON
    document with ``"channel"``); anything else is read as an email."""
    head = raw.lstrip()[:1]
    if head in (b"{", b"["):
        try:
            data = json.loads(raw)
        except ValueError:
            return "email"
        if isinstance(data, dict) and isinstance(data.get("channel"), str) and data["channel"] in registry.channels():
            return str(data["channel"])
    return "email"


def _acknowledgement(decision: Any) -> dict[str, Any]:
    """Would the new ticket's acknowledgement go out? ``decide`` says (the router's own policy)."""
    actions = decision.actions
    reason = decision.auto_reply_suppressed
    template = actions.auto_reply if isinstance(actions.auto_reply, str) else None
    if reason is not None:
        text = f"none ({reason})"
    else:
        text = (
            f"would be sent (template {template!r})"
            if template
            else "would be sent (the default acknowledgement)"
        )
    return {"send": reason is None, "suppressed": reason, "template": template, "text": text}


def _explain_ticket(
    db: Database | None, ruleset: RuleSet, ref: str, settings: Settings
) -> tuple[dict[str, Any], list[str], list[str]]:
    from routing.explain_stored import stored_new_ticket_message

    if db is None:
        raise CliError(f"no store at {_safe_url(settings)}: no ticket {ref.upper()} to explain", 1)
    with db.read() as session:
        try:
            stored = stored_new_ticket_message(session, ref)
        except LookupError as exc:
            raise CliError(str(exc), 1) from None
    if stored is None:
        raise CliError(f"no ticket {ref.upper()} (see `omnidesk tickets list`)", 1)
    explanation = ruleset.explain(stored.envelope, stored.facts)
    now_actions = explanation.actions.model_dump(mode="json")
    before = (stored.decision or {}).get("actions")
    changes = _changes(before, now_actions) if isinstance(before, dict) else None

    head = [
        f"Explaining {stored.ref}: {stored.subject!r}, the message that opened it (intake {stored.intake_id})"
    ]
    if stored.facts_stored:
        head.append(f"Facts:    as stored when it was routed, at {_when(stored.facts.now)}")
    else:
        head.append(
            "Facts:    none stored on the ticket (routed without rules): language re-detected, "
            "time of receipt, no contact history"
        )
    tail: list[str] = []
    if changes is None:
        tail.append("Stored decision: none recorded")
    elif not changes:
        tail.append("Stored decision: the same as above (these rules decide as they did then)")
    else:
        tail.append(
            "Stored decision differs (when routed → under these rules): "
            + "; ".join(f"{c['field']} {_plain(c['then'])} → {_plain(c['now'])}" for c in changes)
        )
    data = _result(
        explanation,
        {
            "input": {
                "kind": "ticket",
                "ref": stored.ref,
                "subject": stored.subject,
                "intake_id": stored.intake_id,
            },
            "store": _store_name(db, settings),
            "facts_source": "ticket" if stored.facts_stored else "derived",
            "evaluated_at": stored.facts.now.isoformat(),
            "thread": None,
            "stored_decision": stored.decision,
            "changed_since_routed": changes,
        },
    )
    return data, head, tail


def _changes(then: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key in now:
        a, b = then.get(key), now.get(key)
        if isinstance(a, list):
            a = tuple(a)
        if isinstance(b, list):
            b = tuple(b)
        if a != b:
            out.append({"field": key, "then": then.get(key), "now": now.get(key)})
    return out


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


# --- rules replay ----------------------------------------------------------------------------------
def cmd_rules_replay(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from omnidesk.app import rules_path
    from routing.explain_stored import iter_new_ticket_messages, subjects_of
    from routing.rules import replay

    candidate = _load_rules(Path(args.rules), "candidate rules")
    current = _load_rules(rules_path(settings), "current rules")
    db = _store(settings)
    if db is None:
        raise CliError(
            f"no store at {_safe_url(settings)}: no stored messages to replay "
            "(check OMNIDESK_DATA_DIR / OMNIDESK_DATABASE_URL)",
            1,
        )
    now = dt.datetime.now(dt.UTC)
    since = None if args.since is None else now - args.since
    started = time.perf_counter()
    try:
        report = replay(
            current, candidate, iter_new_ticket_messages(db, since=since), samples=args.samples
        )
        elapsed = time.perf_counter() - started
        refs = {
            r for kept in (*report.samples.values(), *report.field_samples.values()) for r in kept
        }
        with db.read() as session:
            subjects = subjects_of(session, refs)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot read the store: {getattr(exc, 'orig', None) or exc}", 1) from None
    finally:
        db.dispose()

    window = "at any time" if since is None else f"since {_when(since)} ({args.since_text})"
    rate = f", {report.total / elapsed:,.0f} messages/s" if elapsed > 0 and report.total else ""
    summary = (
        f"Replayed {report.total} new-ticket messages received {window} in {elapsed:.2f} s{rate}."
    )
    if args.json:
        data = report.to_dict()
        for move in data["moves"]:
            move["sample_messages"] = [
                {"ref": r, "subject": subjects.get(r, "")} for r in move["samples"]
            ]
        for changed in data["fields"]:
            changed["sample_messages"] = [
                {"ref": r, "subject": subjects.get(r, "")} for r in changed["samples"]
            ]
        data.update(
            since=None if since is None else since.isoformat(),
            window=args.since_text,
            store=_store_name(db, settings),
            elapsed_seconds=round(elapsed, 3),
        )
        _print_json(data)
        print(summary, file=sys.stderr)
        return 0
    out = [report.to_text().rstrip("\n")]
    if report.moves and args.samples:
        out += ["", "Sample messages per move (see `omnidesk route explain --ticket REF`):"]
        for move, _ in report.moves.most_common():
            out.append(f"  {move[0]} → {move[1]}")
            for ref in report.samples.get(move, []):
                out.append(f"    {ref:<12} {subjects.get(ref, '')}")
    out += ["", summary]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


class _Window(argparse.Action):
    """``--since``: keep the parsed window and the text as written (for the summary)."""

    def __call__(
        self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        namespace.since_text = values
        try:
            setattr(namespace, self.dest, parse_window(values))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument --since: {exc}")


# --- registration ----------------------------------------------------------------------------------
def register(sub: Any, rules: Any) -> None:
    """Add ``route explain`` (to the top level) and ``rules replay`` (to ``omnidesk rules``)."""
    route = sub.add_parser(
        "route", help="routing decisions: why a message goes where it goes"
    ).add_subparsers(dest="route_command", required=True, metavar="COMMAND")
    explain = route.add_parser(
        "explain",
        help="show the facts, every rule evaluated and the decision for a message (writes nothing)",
        description="Explain how a message is (or would be) routed: its thread match, the facts the rules "
        "see, every rule evaluated (matched or not, and the first condition that failed) and the "
        "resulting decision. Read-only: nothing is written to the store or the blob directory.",
    )
    explain.add_argument(
        "message",
        nargs="?",
        metavar="MESSAGE",
        help="an .eml file, or - to read one from standard input",
    )
    explain.add_argument(
        "--ticket",
        metavar="REF",
        help="explain the message that opened a stored ticket, with its stored facts",
    )
    explain.add_argument(
        "--rules", metavar="FILE", help="the rules file to evaluate (default: OMNIDESK_RULES_FILE)"
    )
    explain.add_argument(
        "--at",
        type=_instant,
        metavar="TIME",
        help="evaluate a message file as if it arrived at TIME (ISO 8601; default: now)",
    )
    explain.add_argument(
        "--channel",
        metavar="NAME",
        help="the channel whose payload the file is (default: the channel a stored JSON payload "
        "names, else email)",
    )
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(handler=cmd_route_explain)

    rp = rules.add_parser(
        "replay",
        help="what a candidate rules file would change on past traffic (read-only)",
        description="Re-evaluate the stored new-ticket messages of a time window under the rules in force "
        "(OMNIDESK_RULES_FILE) and under a candidate file, with the facts stored when each was routed, "
        "and report the decisions that change: queue moves, changed actions and sample tickets.",
    )
    rp.add_argument("--rules", required=True, metavar="CANDIDATE", help="the candidate rules file")
    rp.add_argument(
        "--since",
        action=_Window,
        default=dt.timedelta(days=30),
        metavar="WINDOW",
        help="how far back: 7d, 24h, 90m, 2w, or all (default: 30d)",
    )
    rp.add_argument(
        "--samples",
        type=_count,
        default=3,
        metavar="N",
        help="sample tickets per move (default: 3)",
    )
    rp.add_argument("--json", action="store_true", help="machine-readable output")
    rp.set_defaults(handler=cmd_rules_replay, since_text="30d")
