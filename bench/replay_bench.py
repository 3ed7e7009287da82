"""`omnidesk rules replay` at scale: 100,000 stored new-ticket messages, timed end to end.

Fills a SQLite store (migrated by the real migrations) with synthetic routed traffic, inserted
directly for speed: contacts, tickets with the facts the router records, intake rows holding real
envelopes (parsed from generated emails by the real parser, then varied per message), each ticket's
inbound message with its Decision and its outbound acknowledgement, plus follow-ups and older
tickets that the replay must skip. Then it runs ``omnidesk rules replay`` in a fresh process, as an
admin would, with a candidate that moves refunds and damaged deliveries to new queues, and prints
the wall-clock time.

    python -m bench.replay_bench                      # 100,000 messages in a temp dir
    python -m bench.replay_bench --messages 20000 --keep var-bench

Target: under a minute for 100,000 messages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from intake.email.parse import parse_email
from routing.explain_stored import MemoryBlobStore
from routing.facts import Facts
from routing.rules import load_rules
from tickets.db import Database
from tickets.migrate import upgrade

__all__ = ["fill_store", "main"]

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "routing.yaml"

_SUBJECTS = (
    ("Refund please", "Hello, I returned the jacket two weeks ago. When will I get my refund?"),
    (
        "Invoice {n}",
        "Could you send me a corrected invoice for order {n}? The VAT number is missing.",
    ),
    ("Chargeback", "My bank will start a chargeback for order {n} unless this is fixed today."),
    ("Parcel arrived damaged", "The box was crushed and the vase inside is broken, order {n}."),
    ("Broken lamp", "The lamp I ordered (order {n}) arrived broken. Please send a new one."),
    ("Where is my order?", "Hi, where is my order {n}? The tracking number does not work."),
    ("Lieferung", "Hallo, wo ist meine Bestellung {n}? Die Sendungsverfolgung zeigt nichts an."),
    ("Rechnung {n}", "Guten Tag, bitte schicken Sie mir die Rechnung für Bestellung {n}."),
    (
        "Question about sizes",
        "Do the shoes run small? I usually wear 42 and want to order the model {n}.",
    ),
    (
        "Opening hours",
        "Are you open on public holidays? I would like to pick up order {n} in person.",
    ),
    ("Password reset", "I cannot log in to my account, the reset link expired. Can you help?"),
    ("Again no answer", "This is the third time I write about order {n}, still not solved!"),
    ("Newsletter", "Please remove me from the newsletter, I get it twice a week."),
    ("Casino bonus inside", "Claim your casino bonus now, exclusive offer for you."),
)
_NAMES = (
    "Ana",
    "Bo",
    "Cy",
    "Dana",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jo",
    "Kim",
    "Lea",
    "Max",
    "Nia",
)


def _ts(value: dt.datetime) -> str:
    """A timestamp as SQLAlchemy stores it in SQLite (UTC, no zone)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _templates(seed: int) -> list[dict[str, Any]]:
    """Real envelopes: generated emails through the real parser (some with HTML and attachments)."""
    rng = random.Random(seed)
    out = []
    blobs = MemoryBlobStore()
    when = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    for i in range(200):
        subject, body = _SUBJECTS[i % len(_SUBJECTS)]
        n = rng.randrange(10_000, 99_999)
        mail = EmailMessage()
        mail["From"] = f"{_NAMES[i % len(_NAMES)]} <someone@example.net>"
        mail["To"] = "billing@example.com" if i % 17 == 0 else "support@example.com"
        mail["Subject"] = subject.format(n=n)
        mail["Date"] = format_datetime(when)
        mail["Message-ID"] = f"<template-{i}@example.net>"
        text = body.format(n=n) + "\n\nBest regards\n" + _NAMES[i % len(_NAMES)] + "\n"
        mail.set_content(text)
        if i % 3 == 0:
            mail.add_alternative(
                f"<html><body><p>{body.format(n=n)}</p><p>Best regards</p></body></html>",
                subtype="html",
            )
        if i % 7 == 0:
            mail.add_attachment(
                rng.randbytes(2000), maintype="image", subtype="jpeg", filename="photo.jpg"
            )
        envelope = parse_email(
            bytes(mail), blobs=blobs, received_at=when, recipients=[str(mail["To"])]
        )
        out.append(envelope.model_dump(mode="json"))
    return out


def fill_store(
    data_dir: Path, *, messages: int, older: int, follow_ups: float, seed: int = 7
) -> dict[str, int]:
    """A migrated SQLite store with ``messages`` new tickets received in the last 29 days and
    ``older`` ones before that; returns row counts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "omnidesk.db"
    if path.exists():
        raise SystemExit(f"{path} exists already; give an empty --keep directory")
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()

    rng = random.Random(seed)
    ruleset = load_rules(RULES)
    templates = _templates(seed)
    now = dt.datetime.now(dt.UTC)
    contacts = max(1, (messages + older) // 5)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    created = _ts(now - dt.timedelta(days=60))
    addresses = [f"customer{i}@shop{i % 997}.example" for i in range(contacts)]
    addresses[0] = "ceo@bigco.example"  # a VIP of the default rules' directory
    con.executemany(
        "INSERT INTO contacts (id, name, created_at) VALUES (?, ?, ?)",
        ((i + 1, _NAMES[i % len(_NAMES)], created) for i in range(contacts)),
    )
    con.executemany(
        "INSERT INTO contact_identities (id, contact_id, kind, address, identity) VALUES (?, ?, 'email', ?, ?)",
        ((i + 1, i + 1, a, f"email:{a}") for i, a in enumerate(addresses)),
    )

    total = messages + older
    tickets: list[tuple[Any, ...]] = []
    intake: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    intake_id = message_id = 0
    history: dict[int, int] = {}
    for t in range(1, total + 1):
        if t <= older:
            received = now - dt.timedelta(days=31 + 60 * (older - t) / max(older, 1))
        else:
            received = now - dt.timedelta(days=29 * (total - t) / max(messages, 1), minutes=5)
        contact = rng.randrange(contacts) + 1
        address = addresses[contact - 1]
        env = dict(rng.choice(templates))
        external = f"<bench-{t}@{address.split('@')[1]}>"
        env.update(
            external_id=external,
            received_at=received.isoformat(),
            sender={**env["sender"], "address": address},
            **_email_ids(env, external),
        )
        seen = history.get(contact, 0)
        history[contact] = seen + 1
        customer: dict[str, Any] = dict(ruleset.customer_facts(address))
        customer.setdefault("name", _NAMES[contact % len(_NAMES)])
        customer.update(
            open_tickets=min(seen, 3),
            past_tickets=max(0, seen - 3),
            channels=["email"] if seen else [],
            last_outcome="open" if seen else None,
            last_ticket=f"OD-{t - 1}" if seen else None,
        )
        facts = Facts(
            now=received,
            language="de" if env["subject"].startswith(("Liefer", "Rech")) else "en",
            customer=customer,
        )
        from intake.envelope import Envelope

        evaluation = ruleset.evaluate(Envelope.model_validate(env), facts)
        actions = evaluation.actions
        decision = {
            "kind": "new_ticket",
            "event": "new_ticket",
            "thread": None,
            "rules": [r.model_dump(mode="json") for r in evaluation.applied],
            "actions": actions.model_dump(mode="json"),
            "auto_reply_suppressed": None,
            "notes": [],
        }
        ts = _ts(received)
        tickets.append(
            (
                t,
                f"OD-{t}",
                "new",
                actions.priority or "normal",
                actions.queue or "general",
                actions.category,
                json.dumps(list(actions.tags)),
                actions.sla,
                env["subject"],
                "email",
                contact,
                json.dumps(facts.to_dict()),
                ts,
                ts,
                ts,
                ts,
            )
        )
        intake_id += 1
        intake.append(
            (
                intake_id,
                "email",
                external,
                ts,
                ts,
                "routed",
                json.dumps(env),
                env["raw_ref"],
                "smtp",
                0,
                t,
                ts,
            )
        )
        message_id += 1
        rows.append(
            (
                message_id,
                t,
                intake_id,
                "inbound",
                "email",
                address,
                json.dumps([address]),
                env["subject"],
                env["text"],
                env["full_text"],
                env["html"],
                json.dumps(env["attachments"]),
                external,
                json.dumps(decision),
                ts,
            )
        )
        message_id += 1
        rows.append(
            (
                message_id,
                t,
                None,
                "outbound",
                "email",
                "support@example.com",
                json.dumps([address]),
                f"[OD-{t}] Re: {env['subject']}",
                "Thank you for writing to us.",
                "Thank you for writing to us.",
                None,
                "[]",
                f"<ack-{t}@example.com>",
                None,
                ts,
            )
        )
        if rng.random() < follow_ups:
            intake_id += 1
            reply = dict(
                env,
                external_id=f"<reply-{t}@bench>",
                text="Any news? " + env["text"],
                **_email_ids(env, f"<reply-{t}@bench>", in_reply_to=f"<ack-{t}@example.com>"),
            )
            intake.append(
                (
                    intake_id,
                    "email",
                    reply["external_id"],
                    ts,
                    ts,
                    "routed",
                    json.dumps(reply),
                    env["raw_ref"],
                    "smtp",
                    0,
                    t,
                    ts,
                )
            )
            message_id += 1
            follow = {
                "kind": "follow_up",
                "event": "follow_up",
                "thread": {
                    "ticket_ref": f"OD-{t}",
                    "via": "in-reply-to",
                    "key": f"email:mid:<ack-{t}@example.com>",
                },
                "rules": [],
                "actions": decision["actions"],
                "auto_reply_suppressed": None,
                "notes": [],
            }
            rows.append(
                (
                    message_id,
                    t,
                    intake_id,
                    "inbound",
                    "email",
                    address,
                    json.dumps([address]),
                    "Re: " + env["subject"],
                    reply["text"],
                    reply["text"],
                    None,
                    "[]",
                    reply["external_id"],
                    json.dumps(follow),
                    ts,
                )
            )
        if len(rows) >= 20_000 or t == total:
            _flush(con, tickets, intake, rows)
    con.commit()
    counts = {
        name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        for name in ("tickets", "intake", "ticket_messages", "contacts")
    }
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return counts


def _flush(con: sqlite3.Connection, tickets: list[Any], intake: list[Any], rows: list[Any]) -> None:
    con.executemany(
        "INSERT INTO tickets (id, ref, status, priority, queue, category, tags, sla_policy, subject, channel, "
        "contact_id, facts, received_at, created_at, updated_at, last_inbound_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tickets,
    )
    con.executemany(
        "INSERT INTO intake (id, channel, external_id, received_at, logged_at, state, envelope, raw_sha256, source, "
        "attempts, ticket_id, routed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        intake,
    )
    con.executemany(
        "INSERT INTO ticket_messages (id, ticket_id, intake_id, direction, channel, sender, recipients, subject, "
        "text, full_text, html, attachments, message_id, decision, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    tickets.clear()
    intake.clear()
    rows.clear()


def candidate_rules(target: Path) -> Path:
    """The default rules with refunds and damaged deliveries moved to new queues."""
    text = RULES.read_text(encoding="utf-8")
    text = text.replace(
        "then: {queue: billing, category: refund, sla: standard}",
        "then: {queue: refunds, category: refund, sla: standard}",
    )
    text = text.replace(
        "then: {queue: logistics, category: delivery-damage, tags: [delivery]}",
        "then: {queue: claims, category: delivery-damage, tags: [delivery]}",
    )
    text = text.replace(
        "queues:\n",
        "queues:\n  - {id: refunds, name: Refunds}\n  - {id: claims, name: Claims}\n",
        1,
    )
    target.write_text(text, encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=100_000, help="new tickets inside the 30-day window"
    )
    parser.add_argument(
        "--older", type=int, default=10_000, help="new tickets before the window (skipped)"
    )
    parser.add_argument(
        "--follow-ups", type=float, default=0.2, help="share of tickets with a follow-up"
    )
    parser.add_argument("--keep", type=Path, help="fill this (empty) data dir and keep it")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="omnidesk-replay-bench-") as tmp:
        data_dir = args.keep or Path(tmp) / "var"
        start = time.perf_counter()
        counts = fill_store(
            data_dir, messages=args.messages, older=args.older, follow_ups=args.follow_ups
        )
        size = (data_dir / "omnidesk.db").stat().st_size / 1e6
        print(
            f"store: {counts['tickets']:,} tickets, {counts['intake']:,} intake rows, "
            f"{counts['ticket_messages']:,} ticket messages, {size:,.0f} MB; filled in {time.perf_counter() - start:.1f} s"
        )
        candidate = candidate_rules(Path(tmp) / "candidate.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIDESK_")}
        env.update(OMNIDESK_DATA_DIR=str(data_dir), OMNIDESK_RULES_FILE=str(RULES))
        command = [
            sys.executable,
            "-m",
            "omnidesk.cli",
            "rules",
            "replay",
            "--rules",
            str(candidate),
            "--since",
            "30d",
        ]
        start = time.perf_counter()
        result = subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, cwd=ROOT
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stdout, result.stderr, file=sys.stderr)
            return 1
        print(result.stdout.rstrip())
        replayed = re.search(r"^Replayed (\d+) new-ticket", result.stdout, re.MULTILINE)
        n = int(replayed.group(1)) if replayed else 0
        print(
            f"\nrules replay, {n:,} messages: {wall:.1f} s wall clock for the whole command "
            f"(process start included), {n / wall:,.0f} messages/s — target < 60 s for 100,000"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())


def _email_ids(env: dict[str, Any], message_id: str, *, in_reply_to: str | None = None) -> dict[str, Any]:
    """The email block and thread keys of a stored envelope (schema 2) with another Message-ID."""
    details = {**env.get("details", {}), "message_id": message_id}
    keys = [{"key": f"email:mid:{message_id}", "via": "own-message-id", "record": True}]
    if in_reply_to:
        details["in_reply_to"] = [in_reply_to]
        keys.append({"key": f"email:mid:{in_reply_to}", "via": "in-reply-to", "record": True})
    return {"details": details, "thread_keys": keys}
