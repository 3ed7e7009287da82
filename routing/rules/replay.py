"""Replay: what would a candidate rules file change on past traffic?

Pure comparison, no store access: the caller (``omnidesk rules replay``) reads the stored
new-ticket messages and their facts, and hands them here with both rule sets. Each message is
evaluated under the rules in force and under the candidate; the report counts the decisions that
change, tabulates queue moves (``billing → logistics: 41``) and other changed actions, and keeps a
few sample messages per move so an admin can ``route explain`` them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from intake.envelope import Envelope
from routing.facts import Facts
from routing.rules.engine import Evaluation, RuleSet

__all__ = ["ReplayReport", "replay"]

_FIELDS = ("queue", "priority", "category", "tags", "assign", "sla", "auto_reply", "notify", "spam")


@dataclass
class ReplayReport:
    current: str
    candidate: str
    total: int = 0
    changed: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)  # queue before → after
    fields: Counter[str] = field(default_factory=Counter)  # changed action → messages
    samples: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    field_samples: dict[str, list[str]] = field(default_factory=dict)
    rule_changes: Counter[tuple[str, str]] = field(default_factory=Counter)  # deciding rule moves

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "candidate": self.candidate,
            "messages": self.total,
            "changed": self.changed,
            "moves": [
                {"from": a, "to": b, "count": n, "samples": self.samples.get((a, b), [])}
                for (a, b), n in self.moves.most_common()
            ],
            "fields": [
                {"field": name, "count": n, "samples": self.field_samples.get(name, [])}
                for name, n in self.fields.most_common()
            ],
            "rules": [
                {"from": a, "to": b, "count": n} for (a, b), n in self.rule_changes.most_common()
            ],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_text(self) -> str:
        share = f" ({100 * self.changed / self.total:.1f} %)" if self.total else ""
        lines = [
            f"Replayed {self.total} messages: {self.candidate} against {self.current}",
            f"{self.changed} decisions change{share}.",
        ]
        if self.moves:
            lines += ["", "Queue moves:"]
            width = max(len(f"{a} → {b}") for a, b in self.moves)
            for (a, b), n in self.moves.most_common():
                samples = ", ".join(self.samples.get((a, b), []))
                lines.append(f"  {f'{a} → {b}':<{width}}  {n:>6}   e.g. {samples}")
        if self.fields:
            lines += ["", "Changed actions:"]
            for name, n in self.fields.most_common():
                examples = ", ".join(self.field_samples.get(name, []))
                lines.append(f"  {name:<12} {n:>6}   e.g. {examples}")
        if self.rule_changes:
            lines += ["", "Deciding rule changes (top 10):"]
            for (a, b), n in self.rule_changes.most_common(10):
                lines.append(f"  {a} → {b}: {n}")
        return "\n".join(lines) + "\n"


def _keep(kept: list[str], key: str, limit: int) -> None:
    if len(kept) < limit:
        kept.append(key)


def _decider(evaluation: Evaluation) -> str:
    return evaluation.applied[-1].name if evaluation.applied else "(defaults)"


def replay(
    current: RuleSet,
    candidate: RuleSet,
    messages: Iterable[tuple[str, Envelope, Facts]],
    *,
    samples: int = 3,
) -> ReplayReport:
    """Compare decisions; ``messages`` yields (a key to show, e.g. a ticket ref, envelope, facts)."""
    from routing.decide import Policy, decide
    from routing.situation import Situation

    report = ReplayReport(current.source, candidate.source)
    policy = Policy(auto_reply_limit_per_hour=1 << 30)  # the cap depends on traffic, not rules
    for key, envelope, facts in messages:
        report.total += 1
        # The router's own decide(), on the situation as stored: every policy exists once.
        situation = Situation(now=facts.now, thread=None, ticket=None, linked_ref=None, contact=None,
                              facts=facts, auto_replies_last_hour=0)
        decided_before = decide(envelope, situation, current, policy)
        decided_after = decide(envelope, situation, candidate, policy)
        before = Evaluation(decided_before.rules, decided_before.actions)
        after = Evaluation(decided_after.rules, decided_after.actions)
        if before.actions == after.actions and (
            decided_before.auto_reply_suppressed == decided_after.auto_reply_suppressed
        ):
            continue
        report.changed += 1
        old, new = before.actions, after.actions
        for name in _FIELDS:
            if getattr(old, name) != getattr(new, name):
                report.fields[name] += 1
                _keep(report.field_samples.setdefault(name, []), key, samples)
        if old.queue != new.queue:
            move = (old.queue or "-", new.queue or "-")
            report.moves[move] += 1
            _keep(report.samples.setdefault(move, []), key, samples)
        report.rule_changes[(_decider(before), _decider(after))] += 1
    return report
