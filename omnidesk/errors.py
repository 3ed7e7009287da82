"""Errors the command line reports to the operator."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2 (1 for check failures).

    It lives in its own module so that ``python -m omnidesk.cli`` (where ``omnidesk.cli`` runs
    as ``__main__``) and the command modules share one class.
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
