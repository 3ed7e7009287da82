"""What goes out, before a channel has shaped it: the intent, and the channel's draft of it.

Routing (and later the agent API) says *what* to tell *whom*: an ``OutboundIntent``. The adapter of
the channel that reaches that person turns it into a ``Draft``: the outbox row's payload, the
idempotency key a resend carries (our Message-ID for email), the thread keys that lead a reply to
it back to the ticket, and the timeline entry agents see. Composing happens inside the routing
transaction, so the intent, the ticket change and the outbox row commit together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from intake.envelope import AttachmentRef, Envelope, Party

__all__ = ["Draft", "OutboundIntent", "OutboundKind"]

# ack: the automatic acknowledgement of a new ticket; reply: an agent's public answer;
# notify: a note to staff about a ticket; survey: a satisfaction survey.
OutboundKind = Literal["ack", "reply", "notify", "survey"]


@dataclass(frozen=True)
class OutboundIntent:
    kind: OutboundKind
    ticket_ref: str
    to: Party
    subject: str
    text: str
    # The message this answers (its thread headers, the address it reached), when there is one.
    answering: Envelope | None = None
    # The business address, number or channel the conversation runs on (our side of it).
    business: Party | None = None
    html: str | None = None
    attachments: tuple[AttachmentRef, ...] = ()
    # Automatic messages (acknowledgements, notifications) are marked so machines do not answer.
    automatic: bool = True
    # For staff notifications: the ticket's essentials (ref, queue, priority, status, channel,
    # customer, subject, first lines, sla_policy, event) for channels that lay them out.
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Draft:
    channel: str
    recipient: str
    idempotency_key: str
    payload: dict[str, Any]
    # Keys to record against the ticket: a reply citing this message finds the ticket by them.
    thread_keys: tuple[str, ...] = ()
    # The outbound timeline entry: who it is from, its subject and text as the customer sees it.
    sender: str = ""
    subject: str = ""
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
