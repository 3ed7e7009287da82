"""An agent's work on a ticket: change it, note, escalate, merge, link. Each call is one step of
the caller's transaction and writes its own timeline events, with who and when.

Every operation locks the ticket row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
writers are serialised already), checks the version the caller last saw when it names one
(``If-Match``), and bumps the version, so two agents editing one ticket never silently overwrite
each other. The first agent action on a ``new`` ticket opens it. Replies, which go out through a
channel, are in ``tickets.replies``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tickets.commands import add_message
from tickets.lifecycle import check_agent_transition
from tickets.models import (
    Direction,
    IntakeRow,
    OutboxRow,
    Priority,
    Status,
    ThreadKey,
    Ticket,
    TicketLink,
    TicketMessage,
    utcnow,
)

__all__ = [
    "RULES",
    "STATUS_CHANGES",
    "SYSTEM",
    "Actor",
    "NotAllowed",
    "TicketChange",
    "TicketNotFound",
    "VersionMismatch",
    "WorkError",
    "add_note",
    "change_ticket",
    "close_resolved",
    "escalate",
    "first_action",
    "link_tickets",
    "lock_ticket",
    "merge_tickets",
    "record_event",
]


class WorkError(Exception):
    """A change that cannot be made, with a code the API and the CLI report."""

    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TicketNotFound(WorkError):
    code = "not_found"


class NotAllowed(WorkError):
    """The change contradicts the ticket's state (closed, merged, a transition not allowed)."""

    code = "conflict"


class VersionMismatch(WorkError):
    code = "version_mismatch"

    def __init__(self, message: str, current: int) -> None:
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class Actor:
    """Who did it: an agent (their email), or ``system`` / ``customer`` / ``rules``."""

    email: str
    name: str = ""
    is_agent: bool = True

    @property
    def label(self) -> str:
        return self.name or self.email


SYSTEM = Actor("system", "Omnidesk", is_agent=False)
RULES = Actor("rules", "Rules", is_agent=False)
# The key in ``Session.info`` under which status changes wait for the status_changed rules.
STATUS_CHANGES = "omnidesk_status_changes"
_PRIORITIES = tuple(p.value for p in Priority)


@dataclass(frozen=True)
class TicketChange:
    """The fields to change; None leaves a field alone. ``assignee=""`` unassigns."""

    status: str | None = None
    priority: str | None = None
    queue: str | None = None
    assignee: str | None = None
    category: str | None = None
    subject: str | None = None
    tags: Sequence[str] | None = None  # the whole new list
    add_tags: Sequence[str] = ()
    remove_tags: Sequence[str] = ()
    # Why (shown on the timeline with the change): an escalation's reason, a resolution note.
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in ("status", "priority", "queue", "assignee", "category",
                                                            "subject", "tags")) and not (self.add_tags or
                                                                                         self.remove_tags)


def lock_ticket(session: Session, ref: str, *, expected_version: int | None = None,
                allow_closed: bool = True) -> Ticket:
    """The ticket, locked for this transaction, after the checks every change needs."""
    ticket = session.execute(
        select(Ticket).where(Ticket.ref == ref.strip().upper()).with_for_update(of=Ticket)
    ).scalar_one_or_none()
    if ticket is None:
        raise TicketNotFound(f"no ticket {ref} (list tickets with GET /api/tickets or `omnidesk tickets list`)")
    if ticket.merged_into_id is not None:
        target = session.get(Ticket, ticket.merged_into_id)
        raise NotAllowed(f"{ticket.ref} was merged into {target.ref if target else '?'}; work on that ticket")
    if expected_version is not None and expected_version != ticket.version:
        raise VersionMismatch(
            f"{ticket.ref} changed since you read it (your version {expected_version}, now {ticket.version}); "
            "read it again and redo your change", ticket.version)
    if not allow_closed and ticket.status == Status.CLOSED.value:
        raise NotAllowed(f"{ticket.ref} is closed; closed tickets are final (a customer message opens a "
                         "linked ticket)")
    return ticket


def record_event(session: Session, ticket: Ticket, actor: Actor, text: str, event: dict[str, Any],
                 *, when: datetime | None = None) -> None:
    add_message(session, ticket.id, direction=Direction.EVENT, channel=ticket.channel, text=text,
                sender=actor.email, actor=actor.email, event=event, created_at=when or utcnow())


def _bump(ticket: Ticket, now: datetime) -> None:
    ticket.version = (ticket.version or 1) + 1
    ticket.updated_at = now


def first_action(session: Session, ticket: Ticket, actor: Actor, now: datetime, *, sets_status: bool) -> None:
    """The first agent action on a ticket: stamp it, and open a new ticket unless the action
    sets a status of its own."""
    if not actor.is_agent:
        return
    if ticket.first_agent_action_at is None:
        ticket.first_agent_action_at = now
    if ticket.status == Status.NEW.value and not sets_status:
        _set_status(session, ticket, Status.OPEN.value, actor, now, reason="first agent action")


def _set_status(session: Session, ticket: Ticket, target: str, actor: Actor, now: datetime,
                reason: str | None = None) -> None:
    before = ticket.status
    if before == target:
        return
    ticket.status = target
    if target == Status.RESOLVED.value:
        ticket.resolved_at = now
    elif target == Status.CLOSED.value:
        ticket.closed_at = now
    if before == Status.RESOLVED.value and target != Status.CLOSED.value:
        ticket.resolved_at = None
    # Noted on the session for whoever runs ``on: status_changed`` rules before the commit
    # (``routing.status_rules``): the store itself knows no rules.
    session.info.setdefault(STATUS_CHANGES, []).append((ticket.id, before, target, actor.email))
    text = f"{actor.label} changed the status from {before} to {target}"
    event: dict[str, Any] = {"type": "status", "from": before, "to": target}
    if reason:
        text += f": {reason}"
        event["reason"] = reason
    record_event(session, ticket, actor, text, event, when=now)


def _clean_tags(tags: Iterable[str]) -> list[str]:
    out = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            raise WorkError("a tag cannot be empty")
        if len(tag) > 100:
            raise WorkError(f"tag {tag[:20]!r}... is longer than 100 characters")
        out.append(tag)
    return list(dict.fromkeys(out))


def change_ticket(session: Session, ref: str, change: TicketChange, actor: Actor, *,
                  expected_version: int | None = None) -> Ticket:
    """Apply ``change``; every field that really changes is an event on the timeline."""
    now = utcnow()
    ticket = lock_ticket(session, ref, expected_version=expected_version)
    if ticket.status == Status.CLOSED.value and (change.status not in (None, Status.CLOSED.value) or any(
            getattr(change, f) is not None for f in ("priority", "queue", "assignee", "category", "subject"))):
        raise NotAllowed(f"{ticket.ref} is closed; closed tickets are final (tags and notes may still be added)")
    if change.status is not None:
        why = check_agent_transition(ticket.status, change.status)
        if why:
            raise NotAllowed(f"{ticket.ref}: {why}")
    if change.priority is not None and change.priority not in _PRIORITIES:
        raise WorkError(f"priority must be one of {', '.join(_PRIORITIES)}, not {change.priority!r}")
    for name, limit in (("queue", 100), ("category", 100), ("subject", 2000)):
        value = getattr(change, name)
        if value is not None and (not value.strip() if name == "queue" else False):
            raise WorkError(f"{name} cannot be empty")
        if value is not None and len(value) > limit:
            raise WorkError(f"{name} is longer than {limit} characters")
    if change.assignee:
        _check_assignee(session, change.assignee)

    first_action(session, ticket, actor, now, sets_status=change.status is not None)
    changed = False
    for name in ("priority", "queue", "category", "subject"):
        value = getattr(change, name)
        if value is None:
            continue
        value = value.strip() or None if name == "category" else value.strip()
        before = getattr(ticket, name)
        if value == before:
            continue
        setattr(ticket, name, value)
        changed = True
        record_event(session, ticket, actor,
                     f"{actor.label} changed the {name} from {_shown(name, before)} to {_shown(name, value)}",
                     {"type": name, "from": before, "to": value}, when=now)
    if change.assignee is not None:
        value = change.assignee.strip().lower() or None
        before = ticket.assignee
        if value != before:
            ticket.assignee = value
            changed = True
            text = f"{actor.label} assigned the ticket to {value}" if value else f"{actor.label} unassigned the ticket"
            record_event(session, ticket, actor, text, {"type": "assignee", "from": before, "to": value}, when=now)
    if change.tags is not None or change.add_tags or change.remove_tags:
        before_tags = list(ticket.tags or [])
        tags = _clean_tags(change.tags) if change.tags is not None else list(before_tags)
        tags = [t for t in dict.fromkeys([*tags, *_clean_tags(change.add_tags)]) if t not in set(change.remove_tags)]
        if tags != before_tags:
            ticket.tags = tags
            changed = True
            added = [t for t in tags if t not in before_tags]
            removed = [t for t in before_tags if t not in tags]
            parts = ([f"added {', '.join(added)}"] if added else []) + ([f"removed {', '.join(removed)}"] if removed else [])
            record_event(session, ticket, actor, f"{actor.label} {' and '.join(parts)} (tags)",
                         {"type": "tags", "from": before_tags, "to": tags}, when=now)
    if change.status is not None and change.status != ticket.status:
        _set_status(session, ticket, change.status, actor, now, reason=change.reason)
        changed = True
    if changed or actor.is_agent:
        _bump(ticket, now)
    return ticket


def _shown(name: str, value: str | None) -> str:
    return f"'{value}'" if name == "subject" else (value or "none")


def _check_assignee(session: Session, email: str) -> None:
    from tickets.models import Agent

    found = session.execute(select(Agent.active).where(Agent.email == email.strip().lower())).first()
    if found is None:
        raise WorkError(f"{email} is not an agent (add them with `omnidesk agents add`)")
    if not found[0]:
        raise WorkError(f"{email} is an inactive agent; assign the ticket to an active one")


def escalate(session: Session, ref: str, *, queue: str, reason: str, actor: Actor,
             priority: str | None = None, expected_version: int | None = None) -> Ticket:
    """Hand the ticket to another queue (team) with a reason: status ``escalated``."""
    if not reason.strip():
        raise WorkError("say why the ticket is escalated (a reason is required)")
    ticket = lock_ticket(session, ref, expected_version=expected_version, allow_closed=False)
    if ticket.status == Status.RESOLVED.value:
        raise NotAllowed(f"{ticket.ref} is resolved; reopen it before escalating it")
    # The queue change and the status change (with the reason) are the timeline's record of it.
    return change_ticket(session, ref, TicketChange(queue=queue, priority=priority, status=Status.ESCALATED.value,
                                                    reason=f"escalated to {queue}: {reason.strip()}"), actor)


def add_note(session: Session, ref: str, text: str, actor: Actor, *, expected_version: int | None = None) -> tuple[Ticket, int]:
    """An internal note on the timeline: never sent to the customer. Returns (ticket, note id)."""
    if not text.strip():
        raise WorkError("a note needs some text")
    now = utcnow()
    ticket = lock_ticket(session, ref, expected_version=expected_version)
    first_action(session, ticket, actor, now, sets_status=False)
    add_message(session, ticket.id, direction=Direction.NOTE, channel="internal", text=text, sender=actor.email,
                actor=actor.email, created_at=now)
    _bump(ticket, now)
    session.flush()
    note_id = session.execute(
        select(TicketMessage.id).where(TicketMessage.ticket_id == ticket.id, TicketMessage.direction == "note")
        .order_by(TicketMessage.id.desc()).limit(1)
    ).scalar_one()
    return ticket, int(note_id)


def _link(session: Session, a: Ticket, b: Ticket, kind: str, actor: Actor) -> bool:
    exists = session.execute(select(TicketLink).where(
        ((TicketLink.ticket_id == a.id) & (TicketLink.other_id == b.id))
        | ((TicketLink.ticket_id == b.id) & (TicketLink.other_id == a.id)))).first()
    if exists:
        return False
    session.add(TicketLink(ticket_id=a.id, other_id=b.id, kind=kind, created_by=actor.email, created_at=utcnow()))
    return True


def link_tickets(session: Session, ref: str, other_ref: str, actor: Actor) -> Ticket:
    """Mark two tickets as related (both timelines say so)."""
    ticket = lock_ticket(session, ref)
    other = lock_ticket(session, other_ref)
    if ticket.id == other.id:
        raise WorkError("a ticket cannot be linked to itself")
    if _link(session, ticket, other, "related", actor):
        now = utcnow()
        for one, two in ((ticket, other), (other, ticket)):
            record_event(session, one, actor, f"{actor.label} linked {two.ref} as related",
                         {"type": "linked", "ticket": two.ref, "kind": "related"}, when=now)
            _bump(one, now)
    return ticket


def merge_tickets(session: Session, source_ref: str, target_ref: str, actor: Actor, *,
                  expected_version: int | None = None) -> Ticket:
    """Merge ``source`` into ``target``: its timeline, thread keys, intake rows and pending
    outbox rows move to the target, so later messages to either land on the target; the source
    is closed and points at it. Both contacts stay (the source's messages show who wrote)."""
    if source_ref.strip().upper() == target_ref.strip().upper():
        raise WorkError("a ticket cannot be merged into itself")
    # Lock in id order, so two opposite merges cannot deadlock.
    refs = sorted([source_ref.strip().upper(), target_ref.strip().upper()])
    locked = {r: lock_ticket(session, r, expected_version=expected_version if r == source_ref.strip().upper() else None)
              for r in refs}
    source, target = locked[source_ref.strip().upper()], locked[target_ref.strip().upper()]
    if target.status == Status.CLOSED.value:
        raise NotAllowed(f"{target.ref} is closed; merge into an open ticket")
    now = utcnow()
    for model in (TicketMessage, ThreadKey, IntakeRow, OutboxRow):
        session.execute(update(model).where(model.ticket_id == source.id).values(ticket_id=target.id))
    session.execute(update(Ticket).where(Ticket.merged_into_id == source.id).values(merged_into_id=target.id))
    _link(session, source, target, "merged", actor)
    contacts = {int(c) for c in (target.facts or {}).get("merged_contacts", [])}
    if source.contact_id != target.contact_id:
        contacts.add(source.contact_id)
    if contacts:
        target.facts = {**(target.facts or {}), "merged_contacts": sorted(contacts)}
    if target.received_at > source.received_at:
        target.received_at = source.received_at  # the SLA clock keeps the earlier request
    before = source.status
    source.status = Status.CLOSED.value
    source.closed_at = now
    source.merged_into_id = target.id
    _bump(source, now)
    first_action(session, target, actor, now, sets_status=False)
    _bump(target, now)
    session.flush()
    record_event(session, target, actor, f"{actor.label} merged {source.ref} into this ticket",
                 {"type": "merged", "from": source.ref, "to": target.ref, "source_status": before}, when=now)
    # The source's own timeline keeps one entry saying where everything went.
    add_message(session, source.id, direction=Direction.EVENT, channel=source.channel, sender=actor.email,
                actor=actor.email, text=f"{actor.label} merged this ticket into {target.ref}",
                event={"type": "merged_into", "to": target.ref}, created_at=now)
    return target


def close_resolved(session: Session, *, now: datetime, after: timedelta, limit: int = 500) -> list[str]:
    """Close tickets resolved longer than ``after`` ago; returns their refs."""
    due = session.execute(
        select(Ticket).where(Ticket.status == Status.RESOLVED.value, Ticket.resolved_at <= now - after)
        .order_by(Ticket.resolved_at).limit(limit).with_for_update(skip_locked=True, of=Ticket)
    ).scalars().all()
    hours = after.total_seconds() / 3600
    for ticket in due:
        _set_status(session, ticket, Status.CLOSED.value, SYSTEM, now,
                    reason=f"resolved for {hours:g} hours without a customer reply")
        _bump(ticket, now)
    return [t.ref or "" for t in due]
