"""Slack Events API bodies: what a delivery is (``classify``) and the Envelope of a customer's message.

``classify`` looks at a verified body and says what to do with it, without touching anything:
answer a ``url_verification``, log a customer's message (a support channel or a DM to the app),
hand an agent's thread reply in a queue channel to the agent side, or ignore it (our own bot,
other bots, joins, reactions, channels we do not serve). Ignoring is not quarantining: Slack sends
every event the app subscribed to, and most are not support requests.

``parse_payload`` is the adapter's ``parse``: the stored body (plus the meta the edge added, such
as the sender's email from ``users.info``) -> Envelope. It is what quarantine replay and
``route explain`` run, so it decides again from the stored bytes and the channels file.

Thread keys: a top-level message ``ts`` in channel C is the conversation ``slack:C:ts``; a reply
carries ``thread_ts``, the same key, so it continues the ticket. Our answers go into that thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from intake.adapter import Payload, PayloadSummary
from intake.envelope import AttachmentRef, Channel, Envelope, Party, PartyKind, ThreadKey
from intake.errors import UnparseableMessage
from intake.slack.settings import SlackSection

__all__ = [
    "SlackDetails",
    "Verdict",
    "classify",
    "describe_payload",
    "load_body",
    "parse_payload",
    "thread_key",
]

# Message subtypes that are a person writing (a plain message has none).
_WRITTEN = frozenset({None, "", "file_share", "thread_broadcast", "me_message"})
_SUBJECT_CHARS = 80

Action = Literal["url_verification", "customer", "agent", "edit", "delete", "ignore"]


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""
    challenge: str = ""
    channel: str = ""
    queue: str = ""


class SlackDetails(BaseModel):
    """The Slack block of an Envelope (``Envelope.details``), read back by the composer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = ""
    channel: str
    channel_type: str = ""
    ts: str
    thread_ts: str = ""
    # The thread our answers go into: the ticket's first message.
    root_ts: str
    user: str
    user_email: str = ""
    subtype: str = ""
    queue: str = ""


def thread_key(channel: str, root_ts: str) -> str:
    return f"slack:{channel}:{root_ts}"


def load_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of an Events API body, or ``UnparseableMessage`` saying what is wrong."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnparseableMessage(f"the Slack event body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UnparseableMessage("the Slack event body is not a JSON object")
    return body


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _own_bot_users(body: Mapping[str, Any]) -> set[str]:
    """The app's own bot user ids, from the delivery itself: Slack lists the installation that
    receives the event in ``authorizations``, so no ``auth.test`` round trip is needed."""
    out = set()
    for auth in body.get("authorizations") or ():
        if isinstance(auth, Mapping) and auth.get("is_bot") and _text(auth.get("user_id")):
            out.add(str(auth["user_id"]))
    return out


def classify(body: Mapping[str, Any], section: SlackSection) -> Verdict:
    kind = body.get("type")
    if kind == "url_verification":
        return Verdict("url_verification", challenge=_text(body.get("challenge")))
    if kind != "event_callback":
        return Verdict("ignore", f"not an event callback ({kind!r})")
    event = body.get("event")
    if not isinstance(event, Mapping):
        return Verdict("ignore", "the callback has no event")
    if event.get("type") != "message":
        # app_mention and the like arrive besides the message event itself: one is enough.
        return Verdict("ignore", f"{event.get('type')!r} events are not messages")
    channel = _text(event.get("channel"))
    if not channel:
        return Verdict("ignore", "the message names no channel")
    subtype = event.get("subtype")
    inner = event.get("message") if subtype == "message_changed" else event
    inner = inner if isinstance(inner, Mapping) else {}
    bot_id = _text(inner.get("bot_id"))
    if _text(inner.get("user")) in _own_bot_users(body) or (bot_id and bot_id not in section.accept_bots):
        return Verdict("ignore", "a bot's message (ours or another app's)", channel=channel)
    if subtype == "bot_message" and bot_id not in section.accept_bots:
        return Verdict("ignore", "a bot's message", channel=channel)
    queue = section.support_queue(channel)
    is_dm = event.get("channel_type") == "im" or channel.startswith("D")
    if section.is_queue_channel(channel):
        thread_ts, ts = _text(event.get("thread_ts")), _text(event.get("ts"))
        if subtype in _WRITTEN and thread_ts and thread_ts != ts:
            return Verdict("agent", channel=channel)
        return Verdict("ignore", "not a thread reply in a queue channel", channel=channel)
    if queue is None and not (is_dm and section.direct_messages):
        return Verdict("ignore", f"channel {channel} is not a support channel", channel=channel)
    if subtype == "message_changed":
        return Verdict("edit", channel=channel, queue=queue or "")
    if subtype == "message_deleted":
        return Verdict("delete", channel=channel, queue=queue or "")
    if subtype not in _WRITTEN:
        return Verdict("ignore", f"a {subtype!r} message is not someone writing", channel=channel)
    return Verdict("customer", channel=channel, queue=queue or "")


def _subject(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > _SUBJECT_CHARS:
        first = first[: _SUBJECT_CHARS - 1].rstrip() + "…"
    return first or "Slack message"


def parse_payload(payload: Payload, section: SlackSection) -> Envelope:
    if payload.channel != Channel.SLACK:
        raise UnparseableMessage(f"a {payload.channel!r} payload is not a Slack event")
    body = load_body(payload.raw)
    verdict = classify(body, section)
    if verdict.action != "customer":
        raise UnparseableMessage(
            f"this Slack event is not a customer's message ({verdict.action}"
            f"{': ' + verdict.reason if verdict.reason else ''}); check the slack section of the channels file"
        )
    event = body["event"]
    event_id = _text(body.get("event_id"))
    ts, user = _text(event.get("ts")), _text(event.get("user"))
    missing = [name for name, value in (("event_id", event_id), ("event.ts", ts), ("event.user", user)) if not value]
    if missing:
        raise UnparseableMessage(f"the Slack message event has no {', '.join(missing)}")
    channel = verdict.channel
    thread_ts = _text(event.get("thread_ts"))
    root = thread_ts or ts
    found = payload.meta.get("user")
    meta_user: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    email = _text(meta_user.get("email"))
    name = _text(meta_user.get("name")) or _text((event.get("user_profile") or {}).get("real_name"))
    text = _text(event.get("text"))
    details = SlackDetails(
        team=_text(body.get("team_id")), channel=channel, channel_type=_text(event.get("channel_type")),
        ts=ts, thread_ts=thread_ts, root_ts=root, user=user, user_email=email,
        subtype=_text(event.get("subtype")), queue=verdict.queue,
    )
    business = Party(address=channel, kind=PartyKind.SLACK)
    headers = {"x-slack-channel": channel, "x-slack-channel-type": details.channel_type or "channel"}
    if verdict.queue:
        headers["x-slack-queue"] = verdict.queue
    if email:
        headers["x-slack-user-email"] = email
    attachments = tuple(AttachmentRef.model_validate(a) for a in payload.meta.get("attachments") or ())
    return Envelope(
        channel=Channel.SLACK,
        external_id=event_id,
        received_at=payload.received_at,
        sender=Party(address=user, name=name, kind=PartyKind.SLACK),
        business=business,
        recipients=(business,),
        subject=_subject(text),
        text=text,
        full_text=text,
        attachments=attachments,
        thread_keys=(ThreadKey(key=thread_key(channel, root), via="thread_ts" if thread_ts else "slack-message"),),
        headers=headers,
        details=details.model_dump(),
    )


def describe_payload(payload: Payload) -> PayloadSummary:
    body = load_body(payload.raw)
    event = body.get("event") if isinstance(body.get("event"), Mapping) else {}
    assert isinstance(event, Mapping)
    return PayloadSummary(sender=_text(event.get("user")), subject=_subject(_text(event.get("text"))),
                          reference=_text(body.get("event_id")))
