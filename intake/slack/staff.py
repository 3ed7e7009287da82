"""The agents' side of Slack: thread replies under a ticket's queue post, and its buttons.

Agents act through the same ticket operations as the agent API (``tickets.work``,
``tickets.replies``), in one write transaction that runs the ``status_changed`` rules before it
commits and hands the outbox rows it wrote to delivery after it (``AdapterContext``'s
``composer``, ``rules`` and ``on_outbox``, filled in by the process wiring). So a reply written in
Slack to an email ticket leaves as an email, threaded like any agent reply.

Who acts: the Slack user's email (``users.info``) must be an active agent's; anyone else is
refused with an ephemeral message (only they see it) and nothing changes. Which ticket: the
thread's parent is a queue post whose ``<channel>:<ts>`` the outbox recorded as its provider id.

Slack retries a delivery it did not see answered in 3 s; each action records the event's id
(or the button press's trigger id) on the ticket's timeline in the same transaction and is
skipped when it is already there, so a retry never replies twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import select
from sqlalchemy.orm import Session

from intake.adapter import AdapterContext
from intake.slack.api import UserDirectory
from intake.slack.settings import SlackSection
from tickets.agents import agent_by_email
from tickets.commands import add_message
from tickets.models import Direction, OutboxRow, Ticket, TicketMessage
from tickets.work import Actor, WorkError

__all__ = ["StaffDesk"]

log = logging.getLogger(__name__)


class Refused(Exception):
    """The Slack user may not act; the text tells them why and what to do."""


class StaffDesk:
    def __init__(self, ctx: AdapterContext, section: SlackSection, client: WebClient, users: UserDirectory) -> None:
        self.ctx = ctx
        self.section = section
        self.client = client
        self.users = users

    # --- entry points (run in a worker thread of the web process) -------------------------------
    def thread_reply(self, body: Mapping[str, Any]) -> str:
        event = body.get("event") or {}
        channel, thread_ts = str(event.get("channel") or ""), str(event.get("thread_ts") or "")
        user, text = str(event.get("user") or ""), str(event.get("text") or "").strip()
        mark = f"slack-event:{body.get('event_id') or event.get('ts')}"
        ref = self.ticket_of(channel, thread_ts)
        if ref is None:
            return "not a ticket's thread"
        try:
            actor = self.agent(user)
            prefix = self.section.note_prefix
            if text[: len(prefix)].lower() == prefix.lower():
                note = text[len(prefix):].strip()
                return self._act(ref, mark, actor, "note", lambda s: self._note(s, ref, note, actor))
            return self._act(ref, mark, actor, "reply", lambda s: self._reply(s, ref, text, actor))
        except (Refused, WorkError) as exc:
            self.tell(channel, user, str(exc), thread_ts=thread_ts)
            return "refused"

    def button(self, payload: Mapping[str, Any]) -> str:
        """A ``block_actions`` press on a queue post: Assign to me, Resolve or Escalate."""
        from intake.slack.compose import ACTION_ASSIGN, ACTION_ESCALATE, ACTION_RESOLVE

        user = str((payload.get("user") or {}).get("id") or "")
        channel = str((payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get("channel_id") or "")
        message = payload.get("message") if isinstance(payload.get("message"), Mapping) else {}
        assert isinstance(message, Mapping)
        actions = [a for a in payload.get("actions") or () if isinstance(a, Mapping)]
        if payload.get("type") != "block_actions" or not actions:
            return f"not a button press ({payload.get('type')!r})"
        action = actions[0]
        action_id, ref = str(action.get("action_id") or ""), str(action.get("value") or "")
        if action_id not in (ACTION_ASSIGN, ACTION_RESOLVE, ACTION_ESCALATE) or not ref:
            return f"not one of our buttons ({action_id!r})"
        mark = f"slack-action:{action.get('action_ts') or payload.get('trigger_id')}"
        try:
            actor = self.agent(user)
            if action_id == ACTION_ASSIGN:
                done = self._act(ref, mark, actor, "assign", lambda s: self._change(s, ref, actor, assignee=actor.email))
                state = f"Assigned to {actor.label}"
            elif action_id == ACTION_RESOLVE:
                done = self._act(ref, mark, actor, "resolve", lambda s: self._change(s, ref, actor, status="resolved"))
                state = f"Resolved by {actor.label}"
            else:
                done = self._act(ref, mark, actor, "escalate", lambda s: self._escalate(s, ref, actor))
                state = f"Escalated by {actor.label}"
        except (Refused, WorkError) as exc:
            self.tell(channel, user, str(exc), thread_ts=str(message.get("thread_ts") or ""))
            return "refused"
        if done != "duplicate":
            self._show_state(channel, message, state)
        return done

    # --- steps ----------------------------------------------------------------------------------
    def _change(self, session: Session, ref: str, actor: Actor, **fields: Any) -> None:
        from tickets.work import TicketChange, change_ticket

        change_ticket(session, ref, TicketChange(**fields), actor)

    def _escalate(self, session: Session, ref: str, actor: Actor) -> None:
        from tickets.work import escalate

        ticket = session.execute(select(Ticket).where(Ticket.ref == ref)).scalar_one()
        queue = self.section.escalation_queue or ticket.queue
        escalate(session, ref, queue=queue, reason=f"escalated from Slack by {actor.label}", actor=actor)

    def _show_state(self, channel: str, message: Mapping[str, Any], state: str) -> None:
        """The queue post again, with a line saying what was done (so the channel sees it)."""
        ts = str(message.get("ts") or "")
        blocks = [b for b in message.get("blocks") or () if isinstance(b, Mapping) and b.get("block_id") != "omnidesk-state"]
        at = next((i for i, b in enumerate(blocks) if b.get("type") == "actions"), len(blocks))
        blocks.insert(at, {"type": "context", "block_id": "omnidesk-state",
                           "elements": [{"type": "mrkdwn", "text": state}]})
        try:
            self.client.chat_update(channel=channel, ts=ts, blocks=[dict(b) for b in blocks],
                                    text=str(message.get("text") or state))
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("could not update the queue post %s in %s: %s", ts, channel, exc)

    def ticket_of(self, channel: str, ts: str) -> str | None:
        """The ref of the ticket whose queue post is ``ts`` in ``channel``."""
        with self.ctx.db.read() as session:
            found = session.execute(
                select(Ticket.ref).join(OutboxRow, OutboxRow.ticket_id == Ticket.id)
                .where(OutboxRow.provider_id == f"{channel}:{ts}", OutboxRow.kind == "notify")
                .limit(1)
            ).scalar_one_or_none()
        return str(found) if found else None

    def agent(self, user_id: str) -> Actor:
        user = self.users.lookup(user_id) if user_id else None
        if user is None or not user.email:
            raise Refused("Omnidesk could not read your Slack profile's email, so it cannot tell which agent "
                          "you are; nothing was changed. Ask an admin to check the app's users:read.email scope.")
        with self.ctx.db.read() as session:
            agent = agent_by_email(session, user.email)
        if agent is None or not agent.active:
            raise Refused(f"Your Slack email {user.email} is not an active Omnidesk agent's, so nothing was changed. "
                          f"Ask an admin to add you: omnidesk agents add \"Your Name\" {user.email}")
        return Actor(agent.email, agent.name)

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        from routing.status_rules import run_status_rules

        with self.ctx.db.write() as session:
            session.info["outbox"] = []
            yield session
            outbox = [*session.info.pop("outbox"), *run_status_rules(session, self.ctx.rules(), self.ctx.composer)]
        if outbox:
            self.ctx.on_outbox(tuple(outbox))

    def _act(self, ref: str, mark: str, actor: Actor, what: str, work: Any) -> str:
        with self._writing() as session:
            ticket = session.execute(select(Ticket).where(Ticket.ref == ref)).scalar_one()
            done = session.execute(
                select(TicketMessage.id).where(TicketMessage.ticket_id == ticket.id, TicketMessage.message_id == mark)
            ).first()
            if done is not None:
                return "duplicate"
            work(session)
            add_message(session, ticket.id, direction=Direction.EVENT, channel="slack", actor=actor.email,
                        sender=actor.email, text=f"{actor.label} worked this ticket from Slack ({what})",
                        message_id=mark, event={"type": "slack_action", "action": what})
        return what

    def _reply(self, session: Session, ref: str, text: str, actor: Actor) -> None:
        from tickets.replies import send_reply

        if self.ctx.composer is None:
            raise WorkError("this process cannot send replies (no composer); answer from the agent API")
        replied = send_reply(session, ref, text, actor, self.ctx.composer)
        session.info["outbox"].append(replied.outbox_id)

    def _note(self, session: Session, ref: str, text: str, actor: Actor) -> None:
        from tickets.work import add_note

        add_note(session, ref, text, actor)

    def tell(self, channel: str, user: str, text: str, *, thread_ts: str = "") -> None:
        """An ephemeral message: only ``user`` sees it, and Slack does not keep it."""
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts or None)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("could not tell %s in %s: %s (%s)", user, channel, text, exc)
