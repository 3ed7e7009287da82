"""decide(): what happens to one message, from the envelope and its ``Situation``. Reads nothing.

The router, ``route explain`` and ``rules replay`` call this one function, so the stranger-token
policy, the reopen policy, the rules and the acknowledgement suppression each exist once. The
``Decision`` it returns records why (thread key, rules matched, suppression reason); ``apply``
carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from intake.envelope import Envelope
from routing.acknowledgement import suppression_reason
from routing.decision import Actions, Decision, DecisionKind
from routing.situation import Situation
from tickets.lifecycle import CUSTOMER_REOPENS
from tickets.models import Status

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = ["DEFAULT_QUEUE", "Policy", "REOPEN_ON_REPLY", "decide"]

DEFAULT_QUEUE = "general"
# A customer's message on a ticket in one of these states reopens it (a closed one too when the
# ``closed_ticket_reply`` setting says reopen; by default it opens a new, linked ticket).
REOPEN_ON_REPLY = CUSTOMER_REOPENS


@dataclass(frozen=True)
class Policy:
    """The settings decide() depends on."""

    auto_reply_limit_per_hour: int = 5
    closed_ticket_reply: str = "new_ticket"  # or "reopen"
    # A conversation key (a phone number, a chat) reopens its closed ticket within this window.
    conversation_reopen_days: float = 7.0


def decide(envelope: Envelope, situation: Situation, ruleset: RuleSet | None, policy: Policy) -> Decision:
    ticket = situation.ticket
    if situation.thread is not None and ticket is not None:
        if ticket.status == Status.CLOSED.value and envelope.delivery_report is None and not _reopens(
                envelope, situation, policy):
            decision = _new_ticket(envelope, situation, ruleset, policy)
            return decision.model_copy(update={
                "linked_ticket": ticket.ref, "follows_closed": True,
                "notes": (*decision.notes, f"{ticket.ref} is closed: opened a new ticket linked to it"),
            })
        return _follow_up(envelope, situation, ruleset, policy)
    return _new_ticket(envelope, situation, ruleset, policy)


def _reopens(envelope: Envelope, situation: Situation, policy: Policy) -> bool:
    """Does a message matched to a closed ticket reopen it (rather than open a linked new one)?

    By a conversation key (a contact on a business number, a chat): when it was closed less than
    ``conversation_reopen_days`` ago. By a message key (an email's References): by the
    ``closed_ticket_reply`` setting.
    """
    thread, ticket = situation.thread, situation.ticket
    assert thread is not None and ticket is not None
    if any(k.key == thread.key and k.conversation for k in envelope.thread_keys):
        closed_at = ticket.closed_at
        window = timedelta(days=policy.conversation_reopen_days)
        return closed_at is not None and situation.now - closed_at < window
    return policy.closed_ticket_reply == "reopen"


def _follow_up(envelope: Envelope, situation: Situation, ruleset: RuleSet | None, policy: Policy) -> Decision:
    ticket = situation.ticket
    assert ticket is not None
    if envelope.delivery_report is not None:
        report = envelope.delivery_report
        return Decision(
            kind=DecisionKind.FOLLOW_UP,
            event="bounce",
            thread=situation.thread,
            notes=(f"delivery report ({report.state}) on {len(report.keys)} message(s) of ours",),
        )
    notes: list[str] = []
    if ticket.status in REOPEN_ON_REPLY or ticket.status == Status.CLOSED.value:
        notes.append(f"reopened from {ticket.status} by the customer's reply")
    applied: tuple[Any, ...] = ()
    actions = Actions()
    if ruleset is not None:
        # Follow-up rules see the ticket as it was before this message (e.g. "reopened after
        # resolved": ticket.status is still resolved here).
        evaluation = ruleset.evaluate(envelope, situation.facts)
        applied, actions = evaluation.applied, evaluation.actions
    return Decision(
        kind=DecisionKind.FOLLOW_UP,
        event="follow_up",
        thread=situation.thread,
        rules=applied,
        actions=actions,
        notes=tuple(notes),
    )


def _new_ticket(
    envelope: Envelope, situation: Situation, ruleset: RuleSet | None, policy: Policy
) -> Decision:
    applied: tuple[Any, ...] = ()
    if ruleset is not None:
        evaluation = ruleset.evaluate(envelope, situation.facts)
        applied, actions = evaluation.applied, evaluation.actions
    else:
        actions = Actions(queue=DEFAULT_QUEUE, priority="normal")
    notes: list[str] = []
    if situation.linked_ref:
        notes.append(
            f"names {situation.linked_ref}, but the sender is not on that ticket: opened a linked ticket"
        )
    if actions.spam:
        suppressed: str | None = "marked as spam"
    else:
        suppressed = suppression_reason(
            envelope,
            auto_reply=actions.auto_reply,
            ours=situation.ours,
            sent_last_hour=situation.auto_replies_last_hour,
            limit_per_hour=policy.auto_reply_limit_per_hour,
        )
    return Decision(
        kind=DecisionKind.NEW_TICKET,
        rules=applied,
        actions=actions,
        auto_reply_suppressed=suppressed,
        linked_ticket=situation.linked_ref,
        notes=tuple(notes),
    )
