"""Conversation keys (a contact on a business number, a chat session) lead to the conversation's
latest ticket: a closed ticket reopens within the reopen window, after it a new linked ticket
opens and the key moves to it; message keys (an email's References) follow closed_ticket_reply."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from intake.envelope import Envelope, Party, ThreadKey
from routing.decide import Policy, decide
from routing.decision import DecisionKind, ThreadMatch
from routing.facts import Facts
from routing.situation import Situation
from tickets.commands import TicketRef

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
CONVERSATION = "sms:+447700900123>+15005550006"


def situation(*, closed_days_ago: float | None, key: str = CONVERSATION) -> Situation:
    closed_at = NOW - timedelta(days=closed_days_ago) if closed_days_ago is not None else None
    ticket = TicketRef(7, "OD-7", "closed" if closed_at else "open", "normal", "general", None, [], 3, {}, closed_at)
    return Situation(now=NOW, thread=ThreadMatch(ticket_ref="OD-7", via="conversation", key=key), ticket=ticket,
                     linked_ref=None, contact=None, facts=Facts(event="follow_up", now=NOW), auto_replies_last_hour=0)


def envelope(*, conversation: bool) -> Envelope:
    return Envelope(channel="sms", external_id="SM1", received_at=NOW,
                    sender=Party(address="+447700900123", kind="phone"), text="Hello again",
                    thread_keys=(ThreadKey(key=CONVERSATION, via="conversation", conversation=conversation),))


@pytest.mark.parametrize(("closed_days_ago", "reopens"), [(None, True), (2, True), (6.9, True), (7.1, False), (30, False)])
def test_a_conversation_reopens_its_closed_ticket_only_within_the_window(closed_days_ago: float | None,
                                                                         reopens: bool) -> None:
    decision = decide(envelope(conversation=True), situation(closed_days_ago=closed_days_ago), None,
                      Policy(conversation_reopen_days=7))
    if reopens:
        assert decision.kind is DecisionKind.FOLLOW_UP
    else:
        assert decision.kind is DecisionKind.NEW_TICKET
        assert decision.follows_closed and decision.linked_ticket == "OD-7"


@pytest.mark.parametrize(("policy", "kind"), [("new_ticket", DecisionKind.NEW_TICKET), ("reopen", DecisionKind.FOLLOW_UP)])
def test_a_message_key_on_a_closed_ticket_follows_the_closed_ticket_reply_setting(policy: str,
                                                                                  kind: DecisionKind) -> None:
    decision = decide(envelope(conversation=False), situation(closed_days_ago=1), None,
                      Policy(closed_ticket_reply=policy, conversation_reopen_days=7))
    assert decision.kind is kind
