"""Ticket search (a first version: status filter, newest first, one page); the full filters and
keyset pagination replace it."""
from __future__ import annotations
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from sqlalchemy import select
from tickets.models import Ticket, TicketLink, TicketMessage
from tickets.queries import ticket_summary


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class TicketFilter:
    status: tuple[str, ...] = ()
    queue: str | None = None
    assignee: str | None = None
    priority: str | None = None
    channel: str | None = None
    tag: str | None = None
    category: str | None = None
    contact_id: int | None = None
    text: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    include_merged: bool = False


@dataclass
class TicketPage:
    items: list[dict[str, Any]]
    next_cursor: str | None = None


def search_tickets(session, flt, *, cursor=None, limit=50, order="updated"):
    q = select(Ticket).order_by(Ticket.id.desc()).limit(limit)
    if flt.status:
        q = q.where(Ticket.status.in_(flt.status))
    items = []
    for t in session.execute(q).scalars():
        d = ticket_summary(t, 0); d["version"] = t.version; items.append(d)
    return TicketPage(items)


def get_ticket_with_timeline(session, ref, timeline_limit=None, after_id=None):
    t = session.execute(select(Ticket).where(Ticket.ref == ref.upper())).scalar_one_or_none()
    if t is None:
        return None
    msgs = session.execute(select(TicketMessage).where(TicketMessage.ticket_id == t.id).order_by(TicketMessage.id)).scalars().all()
    d = ticket_summary(t, len(msgs))
    d.update(version=t.version, sla_policy=t.sla_policy, facts=t.facts or {}, reopened_count=t.reopened_count,
             resolved_at=t.resolved_at.isoformat() if t.resolved_at else None,
             closed_at=t.closed_at.isoformat() if t.closed_at else None,
             merged_into=session.get(Ticket, t.merged_into_id).ref if t.merged_into_id else None)
    links = []
    for l in session.execute(select(TicketLink).where((TicketLink.ticket_id == t.id) | (TicketLink.other_id == t.id))).scalars():
        other = l.other_id if l.ticket_id == t.id else l.ticket_id
        links.append({"ref": session.get(Ticket, other).ref, "kind": l.kind})
    d["links"] = links
    d["messages"] = [dict(id=m.id, direction=m.direction, channel=m.channel, actor=m.actor, sender=m.sender,
                          recipients=m.recipients, subject=m.subject, text=m.text, html=m.html,
                          attachments=m.attachments, message_id=m.message_id, event=m.event,
                          created_at=m.created_at.isoformat()) for m in msgs]
    return d
