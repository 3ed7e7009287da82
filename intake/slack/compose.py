"""Outbound Slack drafts: answers to a customer in their thread, and the queue channel's posts.

A draft's payload is what ``workers.senders.slack`` hands to ``chat.postMessage``:

    channel     where it goes (the support channel or DM; a user id opens the DM with the app)
    thread_ts   the thread it goes into (the ticket's first Slack message), when there is one
    text        the plain text (also the notification text of messages with blocks)
    blocks      Block Kit layout for the queue channel's ticket post (with its buttons)
    in_ticket_thread  for a queue channel post about an existing ticket: the sender puts it into
                the thread of the ticket's first post there (its ts is only known once sent)

The idempotency key is ours, random per draft; it travels in the message's metadata so that a
resend after a lost answer can find the message Slack did post and not post it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from intake.envelope import Channel
from intake.outbound import Draft, OutboundIntent
from intake.slack.events import SlackDetails, thread_key

__all__ = ["ACTION_ASSIGN", "ACTION_ESCALATE", "ACTION_RESOLVE", "compose_slack", "mrkdwn_escape"]

ACTION_ASSIGN = "omnidesk_assign"
ACTION_RESOLVE = "omnidesk_resolve"
ACTION_ESCALATE = "omnidesk_escalate"
# Slack refuses a text block beyond 3000 characters.
_BLOCK_TEXT = 2900


def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters; without this a customer's ``<!channel>`` pings everyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_channel(address: str) -> bool:
    return address[:1] in {"C", "G", "D"}


def compose_slack(intent: OutboundIntent) -> Draft | None:
    to = intent.to
    if to.kind != Channel.SLACK or not to.address:
        return None
    key = f"slack-{uuid.uuid4().hex}"
    if intent.kind == "notify":
        return _notification(intent, key)
    payload: dict[str, Any] = {"channel": to.address, "text": intent.text, "ticket_ref": intent.ticket_ref}
    keys: tuple[str, ...] = ()
    answering = intent.answering
    if answering is not None and answering.channel == Channel.SLACK and answering.details:
        details = SlackDetails.model_validate(answering.details)
        payload.update(channel=details.channel, thread_ts=details.root_ts)
        keys = (thread_key(details.channel, details.root_ts),)
    return Draft(channel=Channel.SLACK, recipient=to.address, idempotency_key=key, payload=payload,
                 thread_keys=keys, sender="slack-app", subject=intent.subject, text=intent.text)


def _notification(intent: OutboundIntent, key: str) -> Draft | None:
    channel = intent.to.address
    if not _is_channel(channel):
        return None
    d: Mapping[str, Any] = intent.details
    ref = str(d.get("ref") or intent.ticket_ref)
    event = str(d.get("event") or "new_ticket")
    payload: dict[str, Any] = {"channel": channel, "ticket_ref": ref, "event": event}
    if event == "new_ticket":
        payload["text"] = f"New ticket {ref}: {d.get('subject') or intent.subject}"
        payload["blocks"] = ticket_blocks(d, ref)
    else:
        # A customer's follow-up, mirrored into the ticket's thread so agents see the conversation.
        who = mrkdwn_escape(str(d.get("customer") or "The customer"))
        lines = mrkdwn_escape(str(d.get("first_lines") or ""))
        payload["text"] = f"{who} wrote via {d.get('channel') or 'a channel'}:\n{lines}"[:_BLOCK_TEXT]
        payload["in_ticket_thread"] = True
    return Draft(channel=Channel.SLACK, recipient=channel, idempotency_key=key, payload=payload,
                 sender="slack-app", subject=intent.subject, text=str(payload["text"]))


def ticket_blocks(d: Mapping[str, Any], ref: str, *, state_line: str = "") -> list[dict[str, Any]]:
    """The queue channel's post about a ticket: its essentials and the three buttons."""

    def field(label: str, value: Any) -> dict[str, str]:
        return {"type": "mrkdwn", "text": f"*{label}:*\n{mrkdwn_escape(str(value or '-'))}"}

    subject = mrkdwn_escape(str(d.get("subject") or "(no subject)"))
    quote = "\n".join("> " + line for line in mrkdwn_escape(str(d.get("first_lines") or "")).splitlines())
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{ref}* {subject}"[:_BLOCK_TEXT]}},
        {"type": "section", "fields": [
            field("Customer", d.get("customer")), field("Channel", d.get("channel")),
            field("Priority", d.get("priority")), field("Queue", d.get("queue")),
            field("SLA", d.get("sla_policy")), field("Assignee", d.get("assignee")),
        ]},
    ]
    if quote:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": quote[:_BLOCK_TEXT]}})
    if state_line:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": state_line[:_BLOCK_TEXT]}]})
    blocks.append({"type": "actions", "block_id": f"omnidesk:{ref}", "elements": [
        {"type": "button", "action_id": ACTION_ASSIGN, "value": ref, "text": {"type": "plain_text", "text": "Assign to me"}},
        {"type": "button", "action_id": ACTION_RESOLVE, "value": ref, "style": "primary",
         "text": {"type": "plain_text", "text": "Resolve"}},
        {"type": "button", "action_id": ACTION_ESCALATE, "value": ref, "style": "danger",
         "text": {"type": "plain_text", "text": "Escalate"}},
    ]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        "Reply in this thread to answer the customer on their channel; start with the note prefix "
        "for an internal note.")}]})
    return blocks
