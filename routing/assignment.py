"""Who gets a new ticket: a named agent, the next agent in turn, or the least loaded one.

Safe under concurrent workers: both strategies lock the queue's cursor row until commit
(SQLite serialises writers anyway), so concurrent assignments in one queue take turns: no two
tickets take the same turn, no agent is skipped, and no two read the same open-ticket counts.

Agents are the store's accounts, named by email in the rules file. An agent the store knows but
has deactivated gets no new tickets: it is left out of the turns and the load count, and a rule
naming it leaves the ticket unassigned in its queue. An email the store does not know at all is
still assigned, as before agent accounts existed: rules files written then keep working, and
``omnidesk rules check`` warns about such names instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select, update

from tickets.agents import inactive_among
from tickets.commands import Executor
from tickets.models import QueueCursor, Status, Ticket, table_of

if TYPE_CHECKING:
    from routing.rules import RuleSet

__all__ = ["choose_assignee"]

_OPEN = (Status.NEW.value, Status.OPEN.value, Status.PENDING.value, Status.ESCALATED.value)
_cursors = table_of(QueueCursor)
_tickets = table_of(Ticket)


def choose_assignee(conn: Executor, ruleset: "RuleSet | None", *, queue: str, assign: str | None) -> str | None:
    queue_def = ruleset.queues.get(queue) if ruleset is not None else None
    if not assign:
        assign = getattr(queue_def, "assign", None)
        if not assign:
            return None
    if assign not in ("round_robin", "least_loaded"):
        return None if inactive_among(conn, (assign,)) else assign  # a named agent
    agents = list(getattr(queue_def, "agents", ()) or ())
    if agents:
        # One query for the whole list, before the cursor lock so that it is not held longer.
        inactive = inactive_among(conn, agents)
        agents = [a for a in agents if a.lower() not in inactive]
    if not agents:
        return None
    position = _lock_cursor(conn, queue)
    if assign == "round_robin":
        conn.execute(
            update(_cursors).where(_cursors.c.queue == queue).values(position=(position + 1) % (len(agents) * 1_000_000))
        )
        return str(agents[position % len(agents)])
    counts: dict[str, int] = dict(
        conn.execute(
            select(_tickets.c.assignee, func.count())
            .where(_tickets.c.assignee.in_(agents), _tickets.c.status.in_(_OPEN))
            .group_by(_tickets.c.assignee)
        ).all()
    )
    # Fewest open tickets wins; ties go to the agent listed first, so the order is predictable.
    return str(min(agents, key=lambda a: (counts.get(a, 0), agents.index(a))))


def _lock_cursor(conn: Executor, queue: str) -> int:
    position = conn.execute(
        select(_cursors.c.position).where(_cursors.c.queue == queue).with_for_update()
    ).scalar_one_or_none()
    if position is None:
        # A concurrent first insert raises IntegrityError here: the router retries.
        conn.execute(insert(_cursors).values(queue=queue, position=0))
        position = 0
    return int(position)
