"""``omnidesk tickets reply|note|assign|status|escalate|merge|tag``: an agent's work on the command line."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(tickets: Any) -> None:
    """Add the agent's commands to ``omnidesk tickets``."""
