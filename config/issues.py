"""How a YAML file's problems are reported: every one at once, each at its line and column.

An admin fixing a file wants the whole list in one go (not one error per check), in the
``FILE:LINE:COL: path.to.key: message`` shape editors and CI logs turn into clickable links. The
rules file, the channels file and every later YAML file report through ``Issue``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Issue", "Path", "did_you_mean", "format_path"]

# A key path into the YAML document: mapping keys and sequence indexes, e.g. ("rules", 2, "then").
Path = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Issue:
    """One problem found in a YAML file (or in a file it names: a customers CSV, a template)."""

    file: str
    line: int  # 1-based
    column: int  # 1-based
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


def format_path(path: Path) -> str:
    """``("rules", 2, "when", "any", 0)`` → ``rules[2].when.any[0]``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


def did_you_mean(word: object, candidates: Sequence[str] | Iterable[str]) -> str:
    """`` (did you mean 'queue'?)`` when a candidate is close to ``word``, else an empty string."""
    if not isinstance(word, str) or not word:
        return ""
    pool = list(candidates)
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not close:
        # Case slips ("Queue", "HIGH") are not caught by the ratio when words are short.
        lowered = {c.lower(): c for c in pool}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f" (did you mean {close[0]!r}?)" if close else ""
