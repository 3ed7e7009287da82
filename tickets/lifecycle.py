"""The ticket lifecycle: which status may follow which, and who moves a ticket where.

    new ──(first agent action)──> open <──> pending (waiting on the customer)
     │                             │  ▲         │ a customer message reopens it
     │                             ▼  │         ▼
     └──────────────────────> escalated ──> resolved ──(resolved_close_after_hours)──> closed
                                               │ a customer message before it closes reopens
                                               ▼ it (counted: the reopen rate)
                                             open

A customer message on a closed ticket opens a new ticket linked to it (or reopens it, by the
``closed_ticket_reply`` setting). Closed is final for agents: a closed ticket's status, fields
and replies are frozen (notes and links are still allowed), so reports over closed tickets do
not shift. Nothing moves a ticket back to ``new``.
"""

from __future__ import annotations

from tickets.models import Status

__all__ = ["AGENT_TARGETS", "CUSTOMER_REOPENS", "check_agent_transition", "is_open"]

# Where an agent may move a ticket from each status.
AGENT_TARGETS: dict[str, frozenset[str]] = {
    Status.NEW.value: frozenset({"open", "pending", "escalated", "resolved", "closed"}),
    Status.OPEN.value: frozenset({"pending", "escalated", "resolved", "closed"}),
    Status.PENDING.value: frozenset({"open", "escalated", "resolved", "closed"}),
    Status.ESCALATED.value: frozenset({"open", "pending", "resolved", "closed"}),
    Status.RESOLVED.value: frozenset({"open", "pending", "escalated", "closed"}),
    Status.CLOSED.value: frozenset(),
}
# A customer's message moves a ticket in these states back to open.
CUSTOMER_REOPENS = frozenset({Status.PENDING.value, Status.RESOLVED.value})
_OPEN_STATES = frozenset({Status.NEW.value, Status.OPEN.value, Status.PENDING.value, Status.ESCALATED.value})


def is_open(status: str) -> bool:
    """Still being worked: not resolved, not closed."""
    return status in _OPEN_STATES


def check_agent_transition(current: str, target: str) -> str | None:
    """None when an agent may move a ticket from ``current`` to ``target``, else why not."""
    if target == current:
        return None
    if target not in AGENT_TARGETS:
        return f"unknown status {target!r}; one of {', '.join(s.value for s in Status)}"
    if current == Status.CLOSED.value:
        return "the ticket is closed; closed tickets are final (a customer message opens a linked ticket)"
    if target not in AGENT_TARGETS.get(current, frozenset()):
        return f"a ticket cannot go back to {target}" if target == Status.NEW.value else (
            f"a {current} ticket cannot become {target}")
    return None
