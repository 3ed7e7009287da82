"""Slack's Web API as Omnidesk uses it: one way to build the client, one cached user directory.

The client is slack_sdk's own ``WebClient`` pointed at ``OMNIDESK_SLACK_API_BASE``. Its retry
handlers are chosen here on purpose: a 429 is retried after ``Retry-After`` (Slack did not take
the message, so a retry cannot post twice), but a dropped connection is not retried by the
client, because Slack may have posted the message before the connection broke. That case goes
back to the outbox, whose next attempt first looks for the message it may have posted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["SlackUser", "UserDirectory", "web_client"]

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 2
# Retry-After values above this are not slept through by a worker thread: the 429 surfaces as
# a temporary failure and the outbox retries later, freeing the thread for other work.
MAX_RETRY_AFTER_SECONDS = 10


class _ShortRateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps ``Retry-After``), for short waits only."""

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if response is None or response.status_code != 429:
            return False
        for name, values in response.headers.items():
            if name.lower() == "retry-after":
                try:
                    return int(values[0] if isinstance(values, list) else values) <= MAX_RETRY_AFTER_SECONDS
                except (ValueError, IndexError):
                    return True
        return True


def web_client(settings: Settings, *, timeout: int = 10) -> WebClient:
    token = settings.slack_bot_token.get_secret_value()
    return WebClient(
        token=token or None,
        base_url=settings.slack_api_base,
        timeout=timeout,
        retry_handlers=[_ShortRateLimitRetry(max_retry_count=RATE_LIMIT_RETRIES)],
    )


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str = ""
    email: str = ""
    is_bot: bool = False

    def as_meta(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "is_bot": self.is_bot}


class UserDirectory:
    """``users.info`` with a cache: who a Slack user is (name, email), asked once per user per hour.

    Used on the request path (a customer's email for their contact, an agent's email for their
    account), so a failure is not fatal for customers: the message is stored without the email.
    """

    def __init__(self, client: WebClient, *, ttl_seconds: float = 3600.0) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._cache: dict[str, tuple[float, SlackUser]] = {}
        self._lock = threading.Lock()

    def lookup(self, user_id: str) -> SlackUser | None:
        """The user, or None when Slack could not be asked (no token, an error: logged)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(user_id)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        if not self.client.token:
            return None
        try:
            response = self.client.users_info(user=user_id)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("slack users.info %s failed: %s", user_id, exc)
            return None
        data: Any = response.data
        user = data.get("user") if isinstance(data, dict) else None
        if not isinstance(user, dict):
            return None
        profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
        assert isinstance(profile, dict)
        found = SlackUser(
            id=user_id,
            name=str(profile.get("real_name") or user.get("real_name") or user.get("name") or ""),
            email=str(profile.get("email") or "").strip().lower(),
            is_bot=bool(user.get("is_bot")),
        )
        with self._lock:
            self._cache[user_id] = (now, found)
        return found
