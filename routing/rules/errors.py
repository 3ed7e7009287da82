"""The rules file's error: every problem at once (``config.issues.Issue``, ``FILE:LINE:COL``)."""

from __future__ import annotations

from collections.abc import Iterable

from config.issues import Issue, Path, did_you_mean, format_path

__all__ = ["Issue", "Path", "RulesError", "did_you_mean", "format_path"]


class RulesError(Exception):
    """A rules file that cannot be used; ``errors`` holds every problem, formatted, in file order."""

    def __init__(self, errors: Iterable[Issue | str]) -> None:
        self.issues: tuple[Issue, ...] = tuple(e for e in errors if isinstance(e, Issue))
        self.errors: list[str] = [str(e) for e in errors]
        super().__init__(self._summary())

    def _summary(self) -> str:
        count = len(self.errors)
        head = f"{count} error{'s' if count != 1 else ''} in the rules"
        return head + ":\n" + "\n".join(self.errors)
