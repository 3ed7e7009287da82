"""Delivery reports: the one operation that moves outbox rows after they left us.

A bounce (email DSN), a Twilio status callback or a Slack API error names the message it reports
on by our idempotency key (the Message-ID we sent) or by the provider's id; ``report_delivery``
finds the rows either way, moves them (``failed``, ``delivered``, ``read``, ``sent``) and writes
what happened on each ticket's timeline, so the agent sees that the customer did not get a reply.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, or_, select, update

from tickets.commands import Executor, add_message
from tickets.models import Direction, OutboxRow, OutboxState, table_of, utcnow

__all__ = ["report_delivery"]

_outbox = table_of(OutboxRow)
_FIND = select(_outbox.c.id, _outbox.c.ticket_id, _outbox.c.channel, _outbox.c.recipient, _outbox.c.state).where(
    or_(
        _outbox.c.idempotency_key.in_(bindparam("keys", expanding=True)),
        _outbox.c.provider_id.in_(bindparam("keys", expanding=True)),
    )
)
# A report never moves a row backwards: "delivered" after "read" (callbacks arrive out of order)
# or "sent" after "failed" changes nothing.
_RANK = {
    OutboxState.PENDING.value: 0,
    OutboxState.SENDING.value: 0,
    OutboxState.SENT.value: 1,
    OutboxState.DELIVERED.value: 2,
    OutboxState.READ.value: 3,
    OutboxState.FAILED.value: 4,
    OutboxState.SUPPRESSED.value: 4,
}


def report_delivery(conn: Executor, *, keys: Iterable[str], state: str, detail: str = "") -> int:
    """Apply one delivery report to the rows it names; returns how many rows moved."""
    wanted = [k for k in dict.fromkeys(keys) if k]
    if not wanted:
        return 0
    moved = 0
    for row in conn.execute(_FIND, {"keys": wanted}).all():
        if state == row.state or (state != OutboxState.FAILED.value and _RANK.get(state, 0) <= _RANK.get(row.state, 0)):
            continue
        values: dict[str, object] = {"state": state}
        if state == OutboxState.FAILED.value:
            values["last_error"] = detail or "the provider reported a delivery failure"
        conn.execute(update(_outbox).where(_outbox.c.id == row.id).values(**values))
        moved += 1
        if row.ticket_id is not None and state == OutboxState.FAILED.value:
            add_message(
                conn,
                row.ticket_id,
                direction=Direction.EVENT,
                channel=row.channel,
                text=f"Delivery to {row.recipient} failed: {detail or 'reported by the provider'}",
                created_at=utcnow(),
            )
    return moved
