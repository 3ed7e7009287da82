"""The Slack sender: ``chat.postMessage`` for outbox rows on the ``slack`` channel.

Rate limits: a ``429`` is retried by the client after ``Retry-After`` (``intake.slack.api``); past
that the row goes back to the outbox with a temporary failure. Posts to one channel are paced
(``OMNIDESK_SLACK_MIN_POST_INTERVAL_SECONDS``, Slack allows about one a second per channel).

No double posts: Slack has no idempotency key, so every post carries ours in its message
metadata. A first attempt just posts. A later attempt (the last one failed without an answer, or
its process died between posting and recording) first reads the thread or channel for a
message with that key and, when it finds one, records it instead of posting again.

A queue channel's post about an existing ticket (a customer's follow-up) goes into the thread of
the ticket's first post in that channel, found by the provider id the outbox recorded for it
(``<channel>:<ts>``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from sqlalchemy import select

from intake.blobs import BlobStore
from intake.slack.api import web_client
from tickets.models import OutboxRow
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError
from workers.outbox import OutboxMessage

__all__ = ["SlackSender", "senders"]

log = logging.getLogger(__name__)

METADATA_TYPE = "omnidesk_outbound"
# Slack's answers that mean "try again later"; every other error is about the request itself.
_TEMPORARY = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                        "request_timeout", "team_added_to_org"})
# How far back a resend looks for the message it may have posted.
_RECONCILE_LIMIT = 100

# What a ThreadFinder says when the thread's first post exists but is not sent yet.
PENDING = "pending"
ThreadFinder = Callable[[int | None, str], "str | None"]


class SlackSender:
    def __init__(self, client: WebClient, *, find_thread: ThreadFinder | None = None,
                 min_interval: float = 1.0) -> None:
        self.client = client
        self.find_thread = find_thread
        self.min_interval = min_interval
        self._last: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def send(self, message: OutboxMessage) -> str:
        p = message.payload
        channel = str(p.get("channel") or message.recipient)
        thread_ts = str(p.get("thread_ts") or "") or None
        if p.get("in_ticket_thread") and self.find_thread is not None:
            thread_ts = self.find_thread(message.ticket_id, channel)
            if thread_ts == PENDING:
                # The ticket's first post here is still on its way: wait for it, or this would
                # land beside the thread instead of in it.
                raise TemporaryDeliveryError("the ticket's first post in this channel is not sent yet")
        blocks = p.get("blocks")
        metadata = {"event_type": METADATA_TYPE,
                    "event_payload": {"key": message.idempotency_key, "ticket": str(p.get("ticket_ref") or "")}}
        try:
            if message.attempts > 1:
                found = self._already_posted(channel, thread_ts, message.idempotency_key)
                if found is not None:
                    log.info("outbox %s: already posted as %s; not posting again", message.id, found)
                    return found
            with self._paced(channel):
                response = self.client.chat_postMessage(
                    channel=channel, text=str(p.get("text") or ""), blocks=cast("list[dict[str, Any]]", blocks) if blocks else None,
                    thread_ts=thread_ts, metadata=metadata, unfurl_links=False, unfurl_media=False,
                )
        except SlackApiError as exc:
            raise _failure(exc) from exc
        except (SlackClientError, URLError, OSError, TimeoutError) as exc:
            # The post may or may not have reached Slack: the next attempt looks before posting.
            raise TemporaryDeliveryError(f"Slack did not answer: {exc.__class__.__name__}: {exc}") from exc
        return f"{response.get('channel') or channel}:{response.get('ts')}"

    # --- steps --------------------------------------------------------------------------------
    def _paced(self, channel: str) -> _Pace:
        with self._guard:
            lock = self._locks.setdefault(channel, threading.Lock())
        return _Pace(self, channel, lock)

    def _already_posted(self, channel: str, thread_ts: str | None, key: str) -> str | None:
        """The provider id of a message of ours with this idempotency key, if Slack has one."""
        if channel.startswith(("U", "W")):
            opened = self.client.conversations_open(users=channel)
            channel = str((opened.get("channel") or {}).get("id") or channel)
        if thread_ts:
            found = self.client.conversations_replies(channel=channel, ts=thread_ts, include_all_metadata=True,
                                                      limit=_RECONCILE_LIMIT)
        else:
            found = self.client.conversations_history(channel=channel, include_all_metadata=True,
                                                      limit=_RECONCILE_LIMIT)
        for item in found.get("messages") or ():
            meta = item.get("metadata") if isinstance(item, Mapping) else None
            payload = meta.get("event_payload") if isinstance(meta, Mapping) else None
            if isinstance(payload, Mapping) and payload.get("key") == key:
                return f"{channel}:{item.get('ts')}"
        return None


class _Pace:
    """Holds one channel's lock while posting, at least ``min_interval`` after its last post."""

    def __init__(self, sender: SlackSender, channel: str, lock: threading.Lock) -> None:
        self.sender, self.channel, self.lock = sender, channel, lock

    def __enter__(self) -> None:
        self.lock.acquire()
        wait = self.sender._last.get(self.channel, 0.0) + self.sender.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def __exit__(self, *exc: object) -> None:
        self.sender._last[self.channel] = time.monotonic()
        self.lock.release()


def _failure(exc: SlackApiError) -> Exception:
    data: Any = exc.response.data if exc.response is not None else {}
    error = str(data.get("error") if isinstance(data, dict) else "") or "unknown_error"
    status = exc.response.status_code if exc.response is not None else 0
    if error in _TEMPORARY or status == 429 or status >= 500:
        return TemporaryDeliveryError(f"Slack: {error} (HTTP {status})")
    hint = {
        "not_in_channel": "invite the app to the channel (/invite @app)",
        "channel_not_found": "check the channel id in the channels file and that the app is in it",
        "invalid_auth": "check OMNIDESK_SLACK_BOT_TOKEN",
        "not_authed": "set OMNIDESK_SLACK_BOT_TOKEN",
        "missing_scope": "add the chat:write scope to the app and reinstall it",
    }.get(error, "see https://api.slack.com/methods/chat.postMessage#errors")
    return PermanentDeliveryError(f"Slack refused the message: {error}; {hint}")


def notification_thread(db: Any) -> ThreadFinder:
    """Finds the ts of a ticket's first post in a channel from the outbox's recorded provider ids
    (``PENDING`` while that post is still waiting to be sent)."""

    def find(ticket_id: int | None, channel: str) -> str | None:
        if ticket_id is None:
            return None
        with db.read() as session:
            first = session.execute(
                select(OutboxRow.provider_id, OutboxRow.state, OutboxRow.payload)
                .where(OutboxRow.ticket_id == ticket_id, OutboxRow.channel == "slack", OutboxRow.kind == "notify",
                       OutboxRow.recipient == channel)
                .order_by(OutboxRow.id)
                .limit(1)
            ).first()
        if first is None or (first.payload or {}).get("in_ticket_thread"):
            return None  # no post of its own here (the ticket came to this queue later): top level
        if first.provider_id:
            return str(first.provider_id).partition(":")[2] or None
        return PENDING if first.state in ("pending", "sending") else None

    return find


def senders(settings: Any, blobs: BlobStore) -> dict[str, Any]:
    """The Slack sender when a bot token is set; without one Slack rows fail saying so."""
    if not settings.slack_bot_token.get_secret_value():
        return {}
    from tickets.db import Database

    db = Database(settings.effective_database_url, pool_size=2)
    return {"slack": SlackSender(web_client(settings), find_thread=notification_thread(db),
                                 min_interval=settings.slack_min_post_interval_seconds)}
