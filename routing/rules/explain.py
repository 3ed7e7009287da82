"""Why a message was routed the way it was: every rule, matched or not, and the first reason not.

``explain`` walks all rules of the event in file order, without the candidate index (which only
skips rules that cannot match), and reports for each one whether it matched, whether it applied
(a matching rule after a first-match-wins stop does not), and the first condition, in the order
written, that failed. The final actions come from the same code as ``RuleSet.evaluate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from intake.envelope import Envelope
from routing.decision import Actions, AppliedRule
from routing.facts import Facts
from routing.rules.conditions import Failure

if TYPE_CHECKING:
    from routing.rules.engine import RuleSet

__all__ = ["Explanation", "RuleReport", "explain"]


@dataclass(frozen=True)
class RuleReport:
    name: str
    line: int
    matched: bool
    applied: bool
    failure: Failure | None
    actions: dict[str, Any]
    continue_: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "line": self.line,
            "matched": self.matched,
            "applied": self.applied,
            "failed": None
            if self.failure is None
            else {
                "path": self.failure.path,
                "expected": self.failure.expected,
                "actual": self.failure.actual,
            },
            "actions": self.actions,
            "continue": self.continue_,
            "note": self.note,
        }


@dataclass(frozen=True)
class Explanation:
    source: str
    event: str
    message: dict[str, Any]  # what the conditions saw: channel, from, to, subject, ...
    facts: dict[str, Any]
    rules: tuple[RuleReport, ...]
    applied: tuple[AppliedRule, ...]
    actions: Actions

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules_file": self.source,
            "event": self.event,
            "message": self.message,
            "facts": self.facts,
            "rules": [r.to_dict() for r in self.rules],
            "applied": [a.model_dump(mode="json") for a in self.applied],
            "actions": self.actions.model_dump(mode="json"),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    def to_text(self) -> str:
        lines = [f"Rules: {self.source}  (event: {self.event})", "", "Message:"]
        width = max((len(k) for k in self.message), default=0) + 2
        for key, value in self.message.items():
            lines.append(f"  {key + ':':<{width}}{_value(value)}")
        customer = self.facts.get("customer") or {}
        if customer:
            lines.append("Customer:")
            for key, value in customer.items():
                lines.append(f"  {key + ':':<{width}}{_value(value)}")
        ticket = self.facts.get("ticket")
        if ticket:
            lines.append("Ticket:")
            for key, value in ticket.items():
                lines.append(f"  {key + ':':<{width}}{_value(value)}")
        lines += ["", "Rules, in order:"]
        if not self.rules:
            lines.append(f"  (no {self.event} rules)")
        for i, report in enumerate(self.rules, 1):
            mark = "APPLIED" if report.applied else ("matched" if report.matched else "no")
            lines.append(f"  {i:>3}. [{mark:^7}] {report.name}  (line {report.line})")
            if report.failure is not None:
                f = report.failure
                lines.append(f"         failed {f.path}: expected {f.expected}, got {f.actual}")
            if report.applied:
                lines.append(f"         actions: {_actions(report.actions)}")
            if report.note:
                lines.append(f"         {report.note}")
        lines += ["", "Decision:"]
        decided = {
            k: v
            for k, v in self.actions.model_dump(mode="json").items()
            if v not in (None, [], (), False)
        }
        if self.actions.auto_reply is False:
            decided["auto_reply"] = False
        lines.append(f"  {_actions(decided) or '(nothing)'}")
        return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _actions(actions: dict[str, Any]) -> str:
    parts = []
    for key, value in actions.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ", ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            value = "true" if value else "false"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def explain(ruleset: RuleSet, envelope: Envelope, facts: Facts) -> Explanation:
    m = ruleset.message(envelope, facts)
    index = ruleset.index_for(facts.event)
    positions = {id(rule): i for i, rule in enumerate(index.rules)} if index is not None else {}
    reports: list[RuleReport] = []
    chosen: list[int] = []
    stopped_by: str | None = None
    for rule in ruleset.rules:
        if rule.event != facts.event:
            continue
        actions = rule.applied.actions
        if not rule.enabled:
            reports.append(
                RuleReport(
                    rule.name, rule.line, False, False, None, actions, rule.continue_, "disabled"
                )
            )
            continue
        failure = rule.cond.failure(m)
        matched = failure is None
        applied = matched and stopped_by is None
        note = ""
        if matched and not applied:
            note = f"matched, but {stopped_by!r} decided first (first match wins)"
        elif applied and not rule.continue_:
            note = "first match wins: later rules are not applied"
            stopped_by = rule.name
        elif applied:
            note = "continue: true — later rules may add to this"
        if applied:
            chosen.append(positions[id(rule)])
        reports.append(
            RuleReport(
                rule.name, rule.line, matched, applied, failure, actions, rule.continue_, note
            )
        )
    evaluation = (
        ruleset.result(facts.event, tuple(chosen))
        if index is not None
        else ruleset.result(facts.event, ())
    )
    return Explanation(
        source=ruleset.source,
        event=facts.event,
        message=_message(ruleset, m),
        facts=facts.to_dict(),
        rules=tuple(reports),
        applied=evaluation.applied,
        actions=evaluation.actions,
    )


def _message(ruleset: RuleSet, m: Any) -> dict[str, Any]:
    env: Envelope = m.envelope
    out: dict[str, Any] = {
        "channel": env.channel,
        "from": env.sender.address,
        "to": [p.address for p in env.recipients],
        "subject": env.subject,
        "text": _clip(m.text),
        "language": m.language,
        "has_attachment": m.has_attachment,
    }
    if env.headers:
        out["headers"] = dict(env.headers)
    for name in ruleset.calendars:
        out[f"business_hours ({name})"] = m.business_hours(name)
    return out


def _clip(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
