"""``omnidesk agents ...``."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``agents`` command and its subcommands to the top-level parser."""
