"""``omnidesk contacts list|show|merge|add-identity``: the people who write in, on the command line.

A contact is named by its id, an email address, a phone number with its country code
(+4915112345678), a Slack user id or ``kind:address``, as in the API.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from omnidesk.cli import _more, _print_json
from omnidesk.errors import CliError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tickets.contacts import ContactSummary, HistoryPage

__all__ = ["register"]

_KEY_HELP = "a contact id, an email address, a phone number (+4915112345678) or a Slack user id"


def register(sub: Any) -> None:
    """Add the ``contacts`` command and its subcommands to the top-level parser."""
    contacts = sub.add_parser("contacts", help="customers: their addresses and ticket history").add_subparsers(
        dest="contacts_command", required=True)

    listing = contacts.add_parser("list", help="list contacts, newest first")
    listing.add_argument("--search", metavar="TEXT", help="part of a name, email address, phone number or Slack id")
    listing.add_argument("--limit", type=int, default=50, help="how many to show (default 50, at most 500)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_contacts_list)

    show = contacts.add_parser("show", help="one contact: identities and every ticket, newest first")
    show.add_argument("key", metavar="CONTACT", help=_KEY_HELP)
    show.add_argument("--limit", type=int, default=50, help="how many tickets of the history (default 50)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_contacts_show)

    merge = contacts.add_parser("merge", help="merge SOURCE into INTO: identities and tickets move, SOURCE goes")
    merge.add_argument("source", metavar="SOURCE", help="the contact that goes away: " + _KEY_HELP)
    merge.add_argument("into", metavar="INTO", help="the contact that remains")
    merge.add_argument("--actor", metavar="EMAIL",
                       help="the agent doing it, recorded on each moved ticket's timeline (default: system)")
    merge.add_argument("--json", action="store_true")
    merge.set_defaults(handler=cmd_contacts_merge)

    add = contacts.add_parser("add-identity", help="give a contact another email address, phone number or Slack user")
    add.add_argument("key", metavar="CONTACT", help=_KEY_HELP)
    add.add_argument("kind", metavar="KIND", choices=("email", "phone", "slack"), help="email, phone or slack")
    add.add_argument("address", metavar="ADDRESS", help="ana@example.com, +4915112345678 or U024BE7LH")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=cmd_contacts_add_identity)


@contextmanager
def _store(settings: Settings, *, write: bool = False) -> Iterator[Session]:
    """A session on the store, with the store's contact errors turned into the CLI's."""
    from tickets.contacts import ContactError
    from tickets.db import Database
    from tickets.migrate import current_revision, head_revision

    db = Database(settings.effective_database_url)
    try:
        if current_revision(db) != head_revision():
            raise CliError("the database has no (current) schema: run `omnidesk db upgrade` first")
        with db.write() if write else db.read() as session:
            yield session
    except ContactError as exc:
        # Like `tickets show`: 1 when nothing goes by that name, 2 for a request to correct.
        raise CliError(exc.message, 1 if exc.reason == "not_found" else 2) from None
    finally:
        db.dispose()


def cmd_contacts_list(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.contacts import list_contacts

    with _store(settings) as session:
        page = list_contacts(session, args.search, limit=args.limit)
    _more(len(page.items), page.total, "contacts", "--limit")
    if args.json:
        _print_json([c.model_dump(mode="json") for c in page.items])
        return 0
    if not page.items:
        print("no contacts match" if args.search else "no contacts")
        return 0
    print(f"{'ID':>7}  {'NAME':<24} {'TICKETS':>7} {'OPEN':>4}  IDENTITIES")
    for c in page.items:
        print(f"{c.id:>7}  {c.name[:24]:<24} {c.tickets:>7} {c.open_tickets:>4}  {_identities(c)}")
    return 0


def cmd_contacts_show(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.contacts import show_contact

    with _store(settings) as session:
        contact = show_contact(session, args.key, history_limit=args.limit)
    _more(len(contact.history.items), contact.history.total, "tickets", "--limit")
    if args.json:
        _print_json(contact.model_dump(mode="json"))
        return 0
    _print_contact(contact)
    _print_history(contact.history)
    return 0


def cmd_contacts_merge(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.agents import agent_by_email
    from tickets.contacts import merge_contacts, resolve_contact

    with _store(settings, write=True) as session:
        actor = "system"
        if args.actor:
            agent = agent_by_email(session, args.actor)
            if agent is None:
                raise CliError(f"no agent {args.actor} (see `omnidesk agents list`); leave --actor out to "
                               "record the merge as done by the system")
            actor = agent.email
        result = merge_contacts(session, resolve_contact(session, args.source), resolve_contact(session, args.into),
                                actor=actor)
    if args.json:
        _print_json(result.model_dump(mode="json"))
        return 0
    print(f"merged contact {result.merged_from} into {result.contact.id}: {result.moved_tickets} "
          f"ticket{'s' if result.moved_tickets != 1 else ''} and {result.moved_identities} "
          f"identit{'ies' if result.moved_identities != 1 else 'y'} moved")
    _print_contact(result.contact)
    return 0


def cmd_contacts_add_identity(args: argparse.Namespace, settings: Settings) -> int:
    from tickets.contacts import add_identity, resolve_contact

    with _store(settings, write=True) as session:
        contact, added = add_identity(session, resolve_contact(session, args.key), args.kind, args.address)
    if args.json:
        _print_json({"added": added, "contact": contact.model_dump(mode="json")})
        return 0
    print(("added" if added else "contact already has") + f" {args.kind} {args.address}")
    _print_contact(contact)
    return 0


def _identities(contact: ContactSummary) -> str:
    return ", ".join(f"{i.kind}:{i.address}" for i in contact.identities)


def _print_contact(contact: ContactSummary) -> None:
    print(f"contact {contact.id}  {contact.name or '(no name)'}  since {contact.created_at:%Y-%m-%d}  "
          f"{contact.tickets} ticket{'s' if contact.tickets != 1 else ''}, {contact.open_tickets} open")
    for identity in contact.identities:
        print(f"  {identity.kind:<6} {identity.address}")


def _print_history(history: HistoryPage) -> None:
    if not history.items:
        print("\nno tickets")
        return
    print(f"\n{'REF':<10} {'CREATED':<10} {'CHANNEL':<8} {'STATUS':<9} {'OUTCOME':<11} {'PRIORITY':<8} "
          f"{'QUEUE':<12} {'MSGS':>4}  {'ENDED':<10} SUBJECT")
    for t in history.items:
        outcome = f"-> {t.merged_into}" if t.merged_into else t.outcome
        print(f"{t.ref:<10} {_date(t.created_at):<10} {t.channel[:8]:<8} {t.status:<9} {outcome[:11]:<11} "
              f"{t.priority:<8} {t.queue[:12]:<12} {t.message_count:>4}  {_date(t.closed_at or t.resolved_at):<10} {t.subject[:60]}")


def _date(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d}" if value else "-"
