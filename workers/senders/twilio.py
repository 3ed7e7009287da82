"""Outbound SMS and WhatsApp through Twilio's Messages API, with the real ``twilio`` client.

Every request goes to ``OMNIDESK_TWILIO_API_BASE`` (Twilio's own by default; a proxy or a local
test server otherwise): the client's HTTP layer rewrites the scheme and host of each URL, so
every Twilio domain the library knows ends up there.

Errors are classified for the outbox: 429, 5xx, timeouts and connection failures are temporary
(retried with backoff), every other Twilio refusal is permanent (never retried), and WhatsApp's
closed 24-hour window (63016) says what to do about it. The Messages API has no idempotency key,
so a redelivered row (its sender died after Twilio accepted it, before the SID was recorded)
first asks Twilio for a message it already took: same To, From and body since the row was
composed. Found, its SID is returned instead of sending again.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from intake.twilio.errors import WINDOW_CLOSED, describe_error
from workers.errors import PermanentDeliveryError, TemporaryDeliveryError
from workers.outbox import OutboxMessage

__all__ = ["BaseUrlHttpClient", "TwilioSender", "classify", "senders"]

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.twilio.com"
# How far back a redelivered row looks for its own message (clocks of Twilio and ours differ).
_RECONCILE_SLACK = timedelta(minutes=2)


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the library ships no types
    """Sends every request of the Twilio client to ``base`` instead of ``*.twilio.com``."""

    def __init__(self, base: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parts = urlsplit(base)
        self._scheme, self._netloc = parts.scheme, parts.netloc

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        rewritten = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        return super().request(method, rewritten, *args, **kwargs)


def classify(exc: TwilioRestException) -> PermanentDeliveryError | TemporaryDeliveryError:
    """The outbox's verdict on a refusal from Twilio's API."""
    code = exc.code if exc.code is not None else ""
    text = describe_error(code, exc.msg or "") if code else f"HTTP {exc.status}: {exc.msg}"
    if exc.status == 429 or exc.status >= 500:
        return TemporaryDeliveryError(f"Twilio is unavailable for now ({text})")
    if code == WINDOW_CLOSED:
        return PermanentDeliveryError(f"WhatsApp refused a free-form message: {text}")
    if exc.status in (401, 403):
        return PermanentDeliveryError(f"Twilio refused our credentials ({text}); check "
                                      "OMNIDESK_TWILIO_ACCOUNT_SID and OMNIDESK_TWILIO_AUTH_TOKEN")
    return PermanentDeliveryError(f"Twilio refused the message: {text}")


class TwilioSender:
    def __init__(self, account_sid: str, auth_token: str, *, api_base: str = DEFAULT_API_BASE,
                 timeout: float = 15.0) -> None:
        self.account_sid = account_sid
        self._token = auth_token
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        # One client (and HTTP connection pool) per worker thread: requests' sessions are not
        # promised to be thread-safe.
        self._local = threading.local()

    def _client(self) -> Client:
        client: Client | None = getattr(self._local, "client", None)
        if client is None:
            http = (TwilioHttpClient(timeout=self.timeout) if self.api_base == DEFAULT_API_BASE
                    else BaseUrlHttpClient(self.api_base, timeout=self.timeout))
            client = Client(self.account_sid, self._token, http_client=http)
            self._local.client = client
        return client

    def send(self, message: OutboxMessage) -> str:
        p = message.payload
        closed = p.get("window_closed")
        if closed and not p.get("template"):
            # Known before sending: WhatsApp would refuse it (63016) and count it against us.
            raise PermanentDeliveryError(str(closed))
        try:
            if message.attempts > 1:
                already = self._already_sent(p)
                if already:
                    log.info("outbox %s: Twilio already has it as %s; not sending again", message.id, already)
                    return already
            return self._create(p)
        except TwilioRestException as exc:
            raise classify(exc) from exc
        except (requests.RequestException, OSError, TwilioException) as exc:
            raise TemporaryDeliveryError(f"cannot reach Twilio: {exc.__class__.__name__}: {exc}") from exc

    def _create(self, p: Any) -> str:
        args: dict[str, Any] = {"to": str(p["to"]), "from_": str(p["from"])}
        if p.get("status_callback"):
            args["status_callback"] = str(p["status_callback"])
        template = p.get("template")
        if template:
            import json

            args["content_sid"] = str(template["content_sid"])
            if template.get("variables"):
                args["content_variables"] = json.dumps(template["variables"], sort_keys=True)
        else:
            args["body"] = str(p["body"])
        sent = self._client().messages.create(**args)
        return str(sent.sid)

    def _already_sent(self, p: Any) -> str | None:
        """The SID of a message Twilio took for this row on an earlier attempt, if any."""
        try:
            since = datetime.fromisoformat(str(p.get("composed_at"))) - _RECONCILE_SLACK
        except ValueError:
            since = datetime.now(UTC) - timedelta(days=1)
        body = None if p.get("template") else str(p.get("body", ""))
        for found in self._client().messages.list(to=str(p["to"]), from_=str(p["from"]), limit=50):
            created = found.date_created
            if created is not None and created < since:
                continue
            if body is None or (found.body or "").strip() == body.strip():
                return str(found.sid)
        return None


def senders(settings: Any, blobs: Any) -> dict[str, Any]:
    """The SMS and WhatsApp sender, when the Twilio account is configured."""
    sid = settings.twilio_account_sid
    token = settings.twilio_auth_token.get_secret_value()
    if not sid or not token:
        return {}
    sender = TwilioSender(sid, token, api_base=settings.twilio_api_base, timeout=settings.twilio_timeout_seconds)
    return {"sms": sender, "whatsapp": sender}
