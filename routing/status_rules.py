"""``on: status_changed`` rules: run on every status change an agent or the system made, in the
same transaction as the change.

``tickets.work`` notes each change on the session (``STATUS_CHANGES``); the caller runs this
before it commits. The rules see the ticket's latest customer message as their message and
``ticket.status`` / ``ticket.previous_status``; they may change the priority, queue, category and
tags, and notify staff, but not the status (a rule could otherwise trigger itself). A customer's
message that reopens a ticket is a ``follow_up`` event instead, which follow-up rules see.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from routing.facts import Facts
from tickets.models import Ticket
from tickets.replies import ReplyComposer, last_inbound_envelope, notify_staff
from tickets.work import RULES, STATUS_CHANGES, TicketChange, change_ticket

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = ["run_status_rules"]

log = logging.getLogger(__name__)
EVENT = "status_changed"


def run_status_rules(session: Session, ruleset: RuleSet | None, composer: ReplyComposer) -> tuple[int, ...]:
    """Apply the status_changed rules for the changes noted on ``session``; returns outbox ids."""
    changes = session.info.pop(STATUS_CHANGES, [])
    if not changes or ruleset is None or ruleset.index_for(EVENT) is None:
        return ()
    session.flush()
    outbox: list[int] = []
    for ticket_id, before, after, _actor in changes:
        ticket = session.get(Ticket, ticket_id)
        envelope = last_inbound_envelope(session, ticket_id)
        if ticket is None or envelope is None:
            continue
        facts = Facts(event=EVENT, ticket={"status": after, "previous_status": before, "priority": ticket.priority,
                                           "queue": ticket.queue, "ref": ticket.ref})
        evaluation = ruleset.evaluate(envelope, facts)
        actions = evaluation.actions
        if not evaluation.applied:
            continue
        names = ", ".join(r.name for r in evaluation.applied)
        change = TicketChange(priority=actions.priority, queue=actions.queue, category=actions.category,
                              add_tags=tuple(actions.tags), reason=f"rule: {names}")
        if not change.is_empty():
            change_ticket(session, ticket.ref or "", change, RULES)
        targets = [t for t in actions.notify if "@" in t and ":" not in t.split("@")[0]]
        if targets:
            outbox += notify_staff(session, ticket, targets, composer=composer,
                                   subject=f"[{ticket.ref}] {before} -> {after}: {ticket.subject}",
                                   text=f"{ticket.ref} went from {before} to {after} (rule: {names}).\n")
        log.info("%s: status_changed rules applied: %s", ticket.ref, names)
    # Changes the rules made are not status changes (rules cannot set one): nothing is left over.
    session.info.pop(STATUS_CHANGES, None)
    return tuple(outbox)
