"""What keeps a public form from becoming a spam cannon: rate limit, CSRF tokens, honeypot, IP hashes.

- ``RateLimiter``: a sliding window per client (the hashed IP), in process. Behind a load balancer
  each web process counts on its own, so the effective limit is the setting times the processes;
  good enough to stop one noisy client without a shared store.
- ``FormTokens``: the CSRF token of the HTML form, an HMAC of the form id, the submission id and
  the time it was issued. Stateless, so any web process sharing ``OMNIDESK_FORM_SECRET`` accepts
  it, and it expires (``OMNIDESK_FORM_TOKEN_MAX_AGE_SECONDS``).
- ``HONEYPOT_FIELD``: a field hidden from people (CSS, ``aria-hidden``, ``tabindex=-1``) that bots
  fill in. A filled one gets a convincing "thank you" and nothing is stored.
- ``client_hash``: intake stores a keyed hash of the client IP, never the address itself.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

__all__ = ["HONEYPOT_FIELD", "FormTokens", "RateLimiter", "TokenCheck", "client_hash"]

HONEYPOT_FIELD = "website"

TokenCheck = Literal["ok", "missing", "invalid", "expired"]


def client_hash(ip: str, secret: bytes) -> str:
    """A stable pseudonym of a client address: joins submissions of one client, reveals no IP."""
    return hmac.new(secret, b"client-ip:" + ip.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds per key; ``limit <= 0`` turns it off."""

    # Forget idle clients once this many are tracked, so a scan of many addresses cannot grow it
    # without bound.
    MAX_KEYS = 100_000

    def __init__(
        self, limit: int, window: float = 60.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count one request of ``key``; None when allowed, else seconds until it would be."""
        if self.limit <= 0:
            return None
        now = self.clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.MAX_KEYS:
                    self._forget_idle(now)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]:
            del self._hits[key]


class FormTokens:
    """Issue and check the CSRF token that ties one served page to the submission it posts."""

    def __init__(
        self, secret: bytes, max_age_seconds: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.secret = secret
        self.max_age = max_age_seconds
        self.clock = clock

    def _mac(self, form_id: str, submission_id: str, issued: int) -> str:
        message = f"webform-token:{form_id}:{submission_id}:{issued}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def issue(self, form_id: str, submission_id: str) -> str:
        issued = int(self.clock())
        return f"{issued}.{self._mac(form_id, submission_id, issued)}"

    def check(self, token: str, form_id: str, submission_id: str) -> TokenCheck:
        if not token:
            return "missing"
        issued_text, dot, mac = token.partition(".")
        if not dot or not issued_text.isdigit():
            return "invalid"
        issued = int(issued_text)
        if not hmac.compare_digest(mac, self._mac(form_id, submission_id, issued)):
            return "invalid"
        age = self.clock() - issued
        # A token from the future (clock skew between web processes) gets a minute's grace.
        if age > self.max_age or age < -60:
            return "expired"
        return "ok"
