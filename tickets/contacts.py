"""Contacts: the people who write in, each with one or more identities, and their history.

A contact owns identities (``email:ana@example.com``, ``phone:+4915112345678``,
``slack:U024BE7LH``); routing finds the contact of every inbound message by its sender's identity,
so whatever this module does to identities decides where the next message lands. The functions
take the caller's ``Session`` and run inside its transaction; they know no HTTP and no CLI, and
report every bad request as a ``ContactError`` whose message says what to do.

Merging deletes the merged contact instead of marking it: the schema has no "merged into" column
for contacts, and adding one would need a migration for a row nothing would read (its
identities, tickets and outbox history all move to the surviving contact). What happened stays on
the record as a ``contact_merged`` event on the timeline of every ticket that moved.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any, ClassVar, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, case, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from tickets.commands import add_message
from tickets.models import (
    Contact,
    ContactIdentity,
    Direction,
    OutboxRow,
    Status,
    Ticket,
    TicketMessage,
    utcnow,
)

__all__ = [
    "IDENTITY_KINDS",
    "ContactConflict",
    "ContactDetail",
    "ContactError",
    "ContactInvalid",
    "ContactNotFound",
    "ContactPage",
    "ContactSummary",
    "HistoryEntry",
    "HistoryPage",
    "Identity",
    "IdentityKind",
    "MergeResult",
    "add_identity",
    "contact_history",
    "get_contact",
    "identity_key",
    "list_contacts",
    "merge_contacts",
    "normalise_address",
    "resolve_contact",
    "show_contact",
]

IdentityKind = Literal["email", "phone", "slack"]
IDENTITY_KINDS: tuple[IdentityKind, ...] = ("email", "phone", "slack")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Statuses of a ticket someone still works on (the rest ended: resolved or closed).
_OPEN_STATUSES = (Status.NEW.value, Status.OPEN.value, Status.PENDING.value, Status.ESCALATED.value)
# Slack user ids: U... for ordinary users, W... on Enterprise Grid; upper-case letters and digits.
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{8,}$")
# A search that looks like a phone number is compared without its spaces, dots and brackets.
_PHONE_LIKE = re.compile(r"^\+?[\d\s().-]{3,}$")
_CURSOR_PREFIX = "c1:"
_KEY_FORMS = ("a contact id (12), an email address (ana@example.com), a phone number with its country "
              "code (+4915112345678), a Slack user id (U024BE7LH), or kind:address (slack:U024BE7LH)")


# --- errors -----------------------------------------------------------------------------------------
class ContactError(Exception):
    """A request about contacts that cannot be done; ``message`` says what to do instead."""

    reason: ClassVar[str] = "invalid"

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class ContactNotFound(ContactError):
    reason = "not_found"


class ContactConflict(ContactError):
    reason = "conflict"


class ContactInvalid(ContactError):
    reason = "invalid"


# --- what the functions return -------------------------------------------------------------------
class _Out(BaseModel):
    # Frozen values the API serves as they are (its response models) and the CLI prints as JSON.
    model_config = ConfigDict(frozen=True)


class Identity(_Out):
    kind: str
    address: str
    # The key routing finds the contact by: "kind:address", lower-cased for email.
    identity: str


class ContactSummary(_Out):
    id: int
    name: str
    created_at: datetime
    primary_address: str
    identities: list[Identity]
    tickets: int
    open_tickets: int


class ContactPage(_Out):
    items: list[ContactSummary]
    # Pass it back as ``cursor`` for the next page; None on the last page.
    next_cursor: str | None
    # How many contacts match the search altogether (every page).
    total: int


class HistoryEntry(_Out):
    ref: str
    subject: str
    channel: str
    status: str
    # How the ticket ended: in_progress (not yet), resolved, closed, or merged into another.
    outcome: Literal["in_progress", "resolved", "closed", "merged"]
    merged_into: str | None
    priority: str
    queue: str
    assignee: str | None
    # Messages, replies and notes on its timeline; events (status changes, merges) do not count.
    message_count: int
    received_at: datetime
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


class HistoryPage(_Out):
    items: list[HistoryEntry]
    next_cursor: str | None
    total: int


class ContactDetail(ContactSummary):
    history: HistoryPage


class MergeResult(_Out):
    merged_from: int
    moved_tickets: int
    moved_identities: int
    contact: ContactSummary


# --- identities ------------------------------------------------------------------------------------
def identity_key(kind: str, address: str) -> str:
    """``kind:address`` exactly as ``intake.envelope.Party.identity`` forms it (routing looks
    contacts up by that string): email lower-cased, phone numbers and Slack ids as they are."""
    return f"{kind}:{address.lower() if kind == 'email' else address}"


def normalise_address(kind: str, address: str) -> str:
    """The address as stored for ``kind``, or ContactInvalid saying what a valid one looks like."""
    text = address.strip()
    if kind == "email":
        return _email(text)
    if kind == "phone":
        return _phone(text)
    if kind == "slack":
        return _slack(text)
    raise ContactInvalid("invalid_kind", f"an identity's kind is one of {', '.join(IDENTITY_KINDS)}, not {kind!r}")


def _email(text: str) -> str:
    local, at, domain = text.rpartition("@")
    labels = domain.split(".")
    if (not at or not local or len(local) > 64 or len(text) > 320 or len(labels) < 2 or not all(labels)
            or any(c.isspace() or c in "<>,;\"()[]" for c in text)):
        raise ContactInvalid("invalid_email", f"{text!r} is not an email address (expected name@example.com)")
    return text


def _phone(text: str) -> str:
    # Numbers are stored in E.164 (what the SMS, WhatsApp and voice channels deliver), so an
    # agent's "+49 151 1234-5678" and a message from +4915112345678 are one identity. Without a
    # country code the number would need a home region to guess from; we do not guess.
    given = text
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        raise ContactInvalid("invalid_phone", f"{given!r}: write the phone number with its country code, "
                             "e.g. +4915112345678 or +1 415 555 2671")
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ContactInvalid("invalid_phone", f"{given!r} is not a phone number ({exc}); write it with its "
                             "country code, e.g. +4915112345678") from None
    # "Possible" (a plausible length for its country), not "valid": the library's list of
    # allocated ranges trails reality, and refusing a real customer's number is worse than a typo.
    if not phonenumbers.is_possible_number(number):
        raise ContactInvalid("invalid_phone", f"{given!r} has the wrong number of digits for country code "
                             f"+{number.country_code}; check the number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _slack(text: str) -> str:
    user = text.upper()  # Slack's ids are upper-case; a typed "u024be7lh" is the same user
    if not _SLACK_USER.match(user):
        raise ContactInvalid("invalid_slack_user", f"{text!r} is not a Slack user id (expected U or W and at "
                             "least 8 letters and digits, e.g. U024BE7LH; find it in the user's Slack profile)")
    return user


def _identities(contact: Contact) -> list[Identity]:
    return [Identity(kind=i.kind, address=i.address, identity=i.identity) for i in contact.identities]


# --- finding a contact ----------------------------------------------------------------------------
def _key_to_identity(key: str) -> int | str:
    """A contact id (int) or the identity string a key names."""
    text = key.strip()
    kind, colon, rest = text.partition(":")
    if colon and kind.lower() in IDENTITY_KINDS:
        kind = kind.lower()
        return identity_key(kind, normalise_address(kind, rest))
    if text.isdigit() and not text.startswith("0"):
        if int(text) >= 2**63:
            raise ContactInvalid("invalid_contact_key", f"{text} is too large to be a contact id")
        return int(text)
    if "@" in text:
        return identity_key("email", _email(text))
    if text.startswith(("+", "00")) or (text[:1] == "0" and text.replace(" ", "").isdigit()):
        return identity_key("phone", _phone(text))
    if _SLACK_USER.match(text):
        return identity_key("slack", text)
    raise ContactInvalid("invalid_contact_key", f"{key!r} names no contact: give {_KEY_FORMS}")


def resolve_contact(session: Session, key: str | int) -> int:
    """The id of the contact ``key`` names: an id, an email address, a phone number, a Slack id."""
    wanted = key if isinstance(key, int) else _key_to_identity(key)
    if isinstance(wanted, int):
        found = session.execute(select(Contact.id).where(Contact.id == wanted)).scalar_one_or_none()
    else:
        found = session.execute(
            select(ContactIdentity.contact_id).where(ContactIdentity.identity == wanted)
        ).scalar_one_or_none()
    if found is None:
        what = f"contact {wanted}" if isinstance(wanted, int) else f"contact with the identity {wanted}"
        raise ContactNotFound("contact_not_found", f"no {what}; search for it with `omnidesk contacts list "
                              "--search ...` or GET /api/contacts?q=...")
    return int(found)


def get_contact(session: Session, key: str | int) -> ContactSummary:
    contact_id = resolve_contact(session, key)
    return _summaries(session, [_load(session, contact_id)])[0]


def _load(session: Session, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id, populate_existing=True)
    if contact is None:
        raise ContactNotFound("contact_not_found", f"no contact {contact_id}")
    return contact


def _summaries(session: Session, contacts: list[Contact]) -> list[ContactSummary]:
    counts: dict[int, tuple[int, int]] = {}
    if contacts:
        is_open = case((Ticket.status.in_(_OPEN_STATUSES), 1), else_=0)
        rows = session.execute(
            select(Ticket.contact_id, func.count(Ticket.id), func.sum(is_open))
            .where(Ticket.contact_id.in_([c.id for c in contacts]))
            .group_by(Ticket.contact_id)
        )
        counts = {cid: (int(n), int(n_open or 0)) for cid, n, n_open in rows}
    return [
        ContactSummary(
            id=c.id, name=c.name, created_at=c.created_at, primary_address=c.primary_address,
            identities=_identities(c), tickets=counts.get(c.id, (0, 0))[0],
            open_tickets=counts.get(c.id, (0, 0))[1],
        )
        for c in contacts
    ]


# --- paging ------------------------------------------------------------------------------------------
def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ContactInvalid("invalid_limit", f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    """The id a cursor continues below. Cursors are opaque so their form may change; this one
    is the last id of the previous page (pages run newest first, ids only grow)."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith(_CURSOR_PREFIX) and text[len(_CURSOR_PREFIX):].isdigit():
            return int(text[len(_CURSOR_PREFIX):])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ContactInvalid("invalid_cursor", "the cursor is not one this listing gave out; pass the "
                         "next_cursor of the previous page, or leave it out to start from the newest")


# --- listing and search ----------------------------------------------------------------------------
def _search(query: str | None) -> list[ColumnElement[bool]]:
    """Contacts whose name or any identity's address contains ``query``, ignoring case.

    A substring match cannot use a B-tree index, so a search reads every contact: fine for
    hundreds of thousands of contacts. Beyond that, a trigram index (PostgreSQL ``pg_trgm`` on
    ``contacts.name`` and ``contact_identities.address``) serves this same ILIKE unchanged.
    On SQLite, ignoring case covers ASCII letters only (its ``lower()``).
    """
    text = (query or "").strip()
    if not text:
        return []
    address = re.sub(r"[\s().-]", "", text) if _PHONE_LIKE.match(text) else text
    has_address = exists().where(
        ContactIdentity.contact_id == Contact.id, ContactIdentity.address.icontains(address, autoescape=True)
    )
    return [Contact.name.icontains(text, autoescape=True) | has_address]


def list_contacts(session: Session, query: str | None = None, cursor: str | None = None,
                  limit: int = DEFAULT_LIMIT) -> ContactPage:
    """Contacts newest first, optionally those matching a search; ``total`` counts every match."""
    where = _search(query)
    after = _decode_cursor(cursor)
    statement = select(Contact).where(*where)
    if after is not None:
        statement = statement.where(Contact.id < after)
    rows = list(session.execute(statement.order_by(Contact.id.desc()).limit(_limit(limit) + 1)).scalars())
    total = int(session.execute(select(func.count(Contact.id)).where(*where)).scalar_one())
    page = rows[:limit]
    return ContactPage(items=_summaries(session, page), total=total,
                       next_cursor=_encode_cursor(page[-1].id) if len(rows) > limit else None)


# --- history ------------------------------------------------------------------------------------------
def _outcome(status: str, merged_into_id: int | None) -> Literal["in_progress", "resolved", "closed", "merged"]:
    if merged_into_id is not None:
        return "merged"
    if status == Status.CLOSED.value:
        return "closed"
    if status == Status.RESOLVED.value:
        return "resolved"
    return "in_progress"


def contact_history(session: Session, contact_id: int, cursor: str | None = None,
                    limit: int = DEFAULT_LIMIT) -> HistoryPage:
    """Every ticket of the contact, whatever channel it came by, newest first."""
    resolve_contact(session, contact_id)
    merged = aliased(Ticket)
    messages = (
        select(func.count(TicketMessage.id))
        .where(TicketMessage.ticket_id == Ticket.id, TicketMessage.direction != Direction.EVENT.value)
        .scalar_subquery()
    )
    statement = (
        select(Ticket.id, Ticket.ref, Ticket.subject, Ticket.channel, Ticket.status, Ticket.merged_into_id,
               merged.ref, Ticket.priority, Ticket.queue, Ticket.assignee, messages, Ticket.received_at,
               Ticket.created_at, Ticket.updated_at, Ticket.resolved_at, Ticket.closed_at)
        .outerjoin(merged, merged.id == Ticket.merged_into_id)
        .where(Ticket.contact_id == contact_id)
    )
    after = _decode_cursor(cursor)
    if after is not None:
        statement = statement.where(Ticket.id < after)
    # Newest first by when the ticket was opened here (ids grow with created_at).
    rows = session.execute(statement.order_by(Ticket.id.desc()).limit(_limit(limit) + 1)).all()
    total = int(session.execute(select(func.count(Ticket.id)).where(Ticket.contact_id == contact_id)).scalar_one())
    items = [
        HistoryEntry(
            ref=r[1] or "", subject=r[2], channel=r[3], status=r[4], outcome=_outcome(r[4], r[5]),
            merged_into=r[6], priority=r[7], queue=r[8], assignee=r[9], message_count=int(r[10]),
            received_at=r[11], created_at=r[12], updated_at=r[13], resolved_at=r[14], closed_at=r[15],
        )
        for r in rows[:limit]
    ]
    return HistoryPage(items=items, total=total,
                       next_cursor=_encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None)


def show_contact(session: Session, key: str | int, *, history_limit: int = DEFAULT_LIMIT) -> ContactDetail:
    """A contact with its identities and the first page of its history."""
    summary = get_contact(session, key)
    history = contact_history(session, summary.id, limit=history_limit)
    return ContactDetail(**summary.model_dump(), history=history)


# --- changes -------------------------------------------------------------------------------------------
def add_identity(session: Session, contact_id: int, kind: str, address: str) -> tuple[ContactSummary, bool]:
    """Give a contact one more address; returns the contact and whether the identity is new.

    Adding an identity the contact has already is no change (so a retried request is harmless).
    One that belongs to another contact is a conflict: the two are one person, so merge them.
    """
    kind = kind.strip().lower()
    stored = normalise_address(kind, address)
    key = identity_key(kind, stored)
    contact = _load(session, contact_id)
    owner = _owner(session, key)
    if owner == contact_id:
        return get_contact(session, contact_id), False
    if owner is None:
        try:
            # A savepoint: if a message from this address created its contact meanwhile, the
            # unique identity refuses the insert and this transaction can still answer why.
            with session.begin_nested():
                session.execute(insert(ContactIdentity).values(
                    contact_id=contact_id, kind=kind, address=stored, identity=key))
        except IntegrityError:
            owner = _owner(session, key)
            if owner is None:
                raise
    if owner is not None and owner != contact_id:
        raise ContactConflict(
            "identity_taken",
            f"{stored} belongs to contact {owner}, not {contact.id}: they are the same person, so merge "
            f"contact {owner} into {contact.id} instead (`omnidesk contacts merge {owner} {contact.id}`, or "
            f"POST /api/contacts/{owner}/merge with {{\"into\": \"{contact.id}\"}})",
            {"identity": key, "contact": owner},
        )
    return get_contact(session, contact_id), owner is None


def _owner(session: Session, identity: str) -> int | None:
    found = session.execute(
        select(ContactIdentity.contact_id).where(ContactIdentity.identity == identity)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def merge_contacts(session: Session, source_id: int, target_id: int, *, actor: str) -> MergeResult:
    """Merge contact ``source_id`` into ``target_id``: its identities, tickets and outbox
    history move over, each moved ticket's timeline records it, and the source is deleted.

    Both rows are locked first (in id order, so two opposite merges cannot deadlock). A message
    being routed for the source at the same time either committed its ticket before the lock
    (and that ticket moves too) or waits for the merge, then finds the source gone and is routed
    again by its worker, now to the target.
    """
    if source_id == target_id:
        raise ContactInvalid("merge_into_itself", f"contact {source_id} cannot be merged into itself; "
                             "name two different contacts")
    locked = {
        row.id: row
        for row in session.execute(
            select(Contact.id, Contact.name).where(Contact.id.in_([source_id, target_id]))
            .order_by(Contact.id).with_for_update()
        )
    }
    for contact_id in (source_id, target_id):
        if contact_id not in locked:
            raise ContactNotFound("contact_not_found", f"no contact {contact_id} (merged or deleted meanwhile?); "
                                  "find it with `omnidesk contacts list --search ...`")
    source, target = locked[source_id], locked[target_id]
    # Re-inserted rather than re-pointed: identities are listed in id order and the first is the
    # primary address, so the target's own come first and its primary address stays what it was.
    moving = [
        {"contact_id": target_id, "kind": kind, "address": address, "identity": identity}
        for kind, address, identity in session.execute(
            select(ContactIdentity.kind, ContactIdentity.address, ContactIdentity.identity)
            .where(ContactIdentity.contact_id == source_id).order_by(ContactIdentity.id)
        )
    ]
    session.execute(delete(ContactIdentity).where(ContactIdentity.contact_id == source_id))
    if moving:
        session.execute(insert(ContactIdentity), moving)
    tickets = session.execute(
        select(Ticket.id, Ticket.channel).where(Ticket.contact_id == source_id).order_by(Ticket.id)
    ).all()
    now = utcnow()
    if tickets:
        # A changed contact is a change to the ticket: its version moves, so an agent's edit
        # made against the older version is refused rather than silently mixed in.
        session.execute(
            update(Ticket).where(Ticket.contact_id == source_id)
            .values(contact_id=target_id, updated_at=now, version=Ticket.version + 1)
        )
    # The outbox remembers whom we wrote to: the per-contact auto-reply cap must keep counting
    # what the merged contact already received.
    session.execute(update(OutboxRow).where(OutboxRow.contact_id == source_id).values(contact_id=target_id))
    if source.name and not target.name:
        session.execute(update(Contact).where(Contact.id == target_id).values(name=source.name))
    described = f"contact {source_id}" + (f" ({source.name})" if source.name else "")
    for ticket_id, channel in tickets:
        add_message(
            session, ticket_id, direction=Direction.EVENT, channel=channel, created_at=now, actor=actor,
            text=f"{described} was merged into contact {target_id}"
                 + (f" ({target.name or source.name})" if target.name or source.name else ""),
            event={"type": "contact_merged", "from": source_id, "to": target_id},
        )
    session.execute(delete(Contact).where(Contact.id == source_id))
    # The session may hold the two contacts as they were (identities loaded before the moves).
    session.expire_all()
    return MergeResult(merged_from=source_id, moved_tickets=len(tickets), moved_identities=len(moving),
                       contact=get_contact(session, target_id))
