"""Real servers for tests and benchmarks: PostgreSQL, Redis, an SMTP sink, Dovecot.

Each one uses the server the environment names (``OMNIDESK_TEST_DATABASE_URL``,
``OMNIDESK_TEST_REDIS_URL``) and otherwise starts its own from the machine's binaries. When
neither is possible the test is skipped with the reason, except under ``CI=true``, where a
missing server fails the run: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import socket

import pytest

__all__ = ["free_port", "missing", "under_ci"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(reason: str, *, what: str = "this server") -> None:
    """Skip (locally) or fail (under CI) because a real server (or test data) is not available."""
    if under_ci():
        pytest.fail(f"CI needs {what} but it is missing: {reason}", pytrace=False)
    pytest.skip(reason)
