"""``omnidesk contacts ...``."""

from __future__ import annotations

from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``contacts`` command and its subcommands to the top-level parser."""
