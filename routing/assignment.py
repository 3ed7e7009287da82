"""Who gets a new ticket: a named agent, the next agent in turn, or the least loaded one.

Safe under concurrent workers: round-robin advances a per-queue cursor row under a row lock
(SQLite serialises writers anyway), so no two tickets take the same turn and no agent is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tickets.models import QueueCursor, Status, Ticket

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = ["choose_assignee"]

_OPEN = (Status.NEW.value, Status.OPEN.value, Status.PENDING.value, Status.ESCALATED.value)


def choose_assignee(session: Session, ruleset: "RuleSet | None", *, queue: str, assign: str | None) -> str | None:
    if not assign:
        queue_def = ruleset.queues.get(queue) if ruleset is not None else None
        assign = getattr(queue_def, "assign", None)
        if not assign:
            return None
    if assign not in ("round_robin", "least_loaded"):
        return assign  # a named agent
    queue_def = ruleset.queues.get(queue) if ruleset is not None else None
    agents = list(getattr(queue_def, "agents", ()) or ())
    if not agents:
        return None
    # Both strategies hold the queue's cursor row until commit, so concurrent assignments in one
    # queue take turns instead of reading the same counts or the same position.
    cursor = _lock_cursor(session, queue)
    if assign == "round_robin":
        return _next_in_turn(cursor, agents)
    return _least_loaded(session, agents)


def _lock_cursor(session: Session, queue: str) -> QueueCursor:
    cursor = session.execute(
        select(QueueCursor).where(QueueCursor.queue == queue).with_for_update()
    ).scalar_one_or_none()
    if cursor is None:
        cursor = QueueCursor(queue=queue, position=0)
        session.add(cursor)
        session.flush()  # a concurrent first insert raises IntegrityError: the router retries
    return cursor


def _next_in_turn(cursor: QueueCursor, agents: list[str]) -> str:
    agent = agents[cursor.position % len(agents)]
    cursor.position = (cursor.position + 1) % (len(agents) * 1_000_000)
    return agent


def _least_loaded(session: Session, agents: list[str]) -> str:
    counts = dict(
        session.execute(
            select(Ticket.assignee, func.count(Ticket.id))
            .where(Ticket.assignee.in_(agents), Ticket.status.in_(_OPEN))
            .group_by(Ticket.assignee)
        ).all()
    )
    # Fewest open tickets wins; ties go to the agent listed first, so the order is predictable.
    return min(agents, key=lambda a: (counts.get(a, 0), agents.index(a)))
