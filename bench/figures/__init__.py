"""The figures of the benchmark table, one module each, run by ``python -m bench.run``.

Every module has ``run(ctx: Context) -> Figure``. A ``Figure`` carries its rows for the table
(``bench.report.format_table`` rows, plus an optional ``check`` that says whether a goal was met
and by how much it was missed), free-form ``data`` for the JSON file, and ``notes`` printed under
the table (which intake path was used, what was capped, ...).

    ingest          1. whole-corpus ingest over IMAP, Omnidesk beside django-helpdesk
    smtp_load       2. SMTP intake under load: 250 latency, 250 -> ticket committed
    rules           3. rules engine at 10 / 1,000 / 10,000 rules
    thread_lookup   4. thread lookup and new-ticket routing at 10k / 100k / 1M tickets (PostgreSQL)
    memory          5. worker RSS at steady state; peak RSS growth on a 25 MB attachment
    parse_ceiling   6. stdlib email parsing per core, and Omnidesk's parse_email per core
    http_intake     7. HTTP intake under load: the web form as JSON, 2xx latency, -> ticket committed
    twilio_load     8. signed Twilio webhooks under load: 200 latency, commit, bursts on one ticket
    slack_events    9. signed Slack Events API deliveries at 100/s with Slack's retries: 200 p99
    ticket_api     10. the agent's ticket list and one-ticket read at 10k / 100k / 1M tickets (PostgreSQL)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FIGURES", "Context", "Figure", "check", "med", "row"]

# The numbers in the table are the positions here: a new figure goes at the end.
FIGURES = ("ingest", "smtp_load", "rules", "thread_lookup", "memory", "parse_ceiling",
           "http_intake", "twilio_load", "slack_events", "ticket_api")


@dataclass
class Context:
    """What every figure may use: the options, a scratch directory, shared services and the
    results of figures that ran before (``results[name]``)."""

    quick: bool
    n: int
    runs: int
    skip_peer: bool
    workdir: Path
    seed: int = 1
    shuffle_seed: int = 7
    profile: bool = False
    results: dict[str, Figure] = field(default_factory=dict)
    _corpus_dir: Path | None = None
    _services: Any = None
    log: Callable[[str], None] = print

    def corpus_dir(self) -> Path:
        """The corpus (n, seed) written once for the whole invocation."""
        if self._corpus_dir is None:
            from bench.corpus import generate_corpus

            d = self.workdir / f"corpus-n{self.n}-s{self.seed}"
            if not (d / "manifest.json").exists():
                t = time.perf_counter()
                generate_corpus(self.n, self.seed).write(d)
                self.log(f"  corpus of {self.n} messages written in {time.perf_counter() - t:.1f} s")
            self._corpus_dir = d
        return self._corpus_dir

    def services(self) -> Any:
        """PostgreSQL and Redis (``bench.omnidesk_ingest.service_urls``), found once."""
        if self._services is None:
            from bench.omnidesk_ingest import service_urls

            self._services = service_urls()
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


@dataclass
class Figure:
    name: str
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def med(values: Iterable[Any]) -> Any:
    """Median of the numbers among ``values`` (None when there is none)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return None
    return statistics.median(nums)


def check(
    value: Any, op: str, target: Any, *, unit: str = "", what: str = ""
) -> dict[str, Any] | None:
    """A goal test: ``value op target`` with op ``>=`` or ``<=``. None when not measurable."""
    if not isinstance(value, (int, float)) or not isinstance(target, (int, float)):
        return {"met": False, "value": value, "op": op, "target": target, "unit": unit,
                "what": what, "by": "not measured"}
    met = value >= target if op == ">=" else value <= target
    if met:
        by = ""
    elif op == ">=":
        by = (f"short by {_num(target - value)}{unit} ({value / target:.0%} of the goal, "
              f"{target / value:.1f}× to go)" if value > 0 else f"short by {_num(target)}{unit}")
    else:
        by = f"over by {_num(value - target)}{unit} ({value / target:.1f}× the limit)"
    return {"met": met, "value": value, "op": op, "target": target, "unit": unit, "what": what,
            "by": by}


def _num(x: float) -> str:
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def row(
    figure: str,
    omnidesk: Any,
    peer: Any = None,
    *,
    goal: str | None = None,
    unit: str | None = None,
    higher_is_better: bool = True,
    check: dict[str, Any] | None = None,
    ratio: Any = ...,
) -> dict[str, Any]:
    r: dict[str, Any] = {"figure": figure, "omnidesk": omnidesk, "peer": peer, "goal": goal,
                         "unit": unit, "higher_is_better": higher_is_better}
    if ratio is not ...:
        r["ratio"] = ratio
    if check is not None:
        r["check"] = check
        if goal is not None:
            r["goal"] = f"{goal} ({'met' if check['met'] else 'MISSED'})"
    return r


def pct(values: Sequence[float], q: float) -> float | None:
    from bench.omnidesk_ingest import percentile

    return percentile(values, q)
