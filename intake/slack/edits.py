"""A customer's Slack edits and deletions, applied to the ticket's stored message.

``message_changed`` replaces the message's text and keeps the text it first had (in the
message's ``event`` record, with how often it was edited); ``message_deleted`` marks the message
deleted (the text stays for the record) with an event on the timeline. The message is found by
the intake row's source, ``slack:<channel>:<ts>``, which the events endpoint sets for every
customer message. Both are idempotent, so Slack's retries change nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import select

from intake.adapter import AdapterContext
from tickets.commands import add_message
from tickets.models import Direction, IntakeRow, TicketMessage, utcnow

__all__ = ["apply_change", "message_source"]

Outcome = Literal["edited", "deleted", "unchanged", "unknown", "not_routed"]


def message_source(channel: str, ts: str) -> str:
    return f"slack:{channel}:{ts}"


def apply_change(ctx: AdapterContext, body: Mapping[str, Any], kind: Literal["edit", "delete"]) -> Outcome:
    event = body.get("event") or {}
    channel = str(event.get("channel") or "")
    if kind == "edit":
        message = event.get("message") if isinstance(event.get("message"), Mapping) else {}
        assert isinstance(message, Mapping)
        ts, text = str(message.get("ts") or ""), str(message.get("text") or "")
    else:
        ts, text = str(event.get("deleted_ts") or ""), ""
    with ctx.db.write() as session:
        row = session.execute(
            select(IntakeRow.id, IntakeRow.ticket_id)
            .where(IntakeRow.channel == "slack", IntakeRow.source == message_source(channel, ts))
        ).first()
        if row is None:
            return "unknown"
        stored = session.execute(select(TicketMessage).where(TicketMessage.intake_id == row.id)).scalar_one_or_none()
        if stored is None:
            return "not_routed"
        record: dict[str, Any] = dict(stored.event or {})
        now = utcnow().isoformat()
        if kind == "edit":
            if text == stored.text:
                return "unchanged"
            record.setdefault("original_text", stored.text)
            record.update(type="slack_message", edits=int(record.get("edits", 0)) + 1, edited_at=now)
            stored.text = stored.full_text = text
            note = "The customer edited their Slack message"
        else:
            if record.get("deleted"):
                return "unchanged"
            record.update(type="slack_message", deleted=True, deleted_at=now)
            note = "The customer deleted their Slack message (its text is kept here)"
        stored.event = record
        add_message(session, stored.ticket_id, direction=Direction.EVENT, channel="slack", actor="customer",
                    sender=stored.sender, text=note, event={"type": f"slack_{kind}", "message": stored.id})
    return "edited" if kind == "edit" else "deleted"
