"""The compiled rule set: evaluates a message against thousands of rules in microseconds.

Semantics: the rules of the message's event run in file order; the first matching rule decides and
stops evaluation, unless it says ``continue: true``, in which case its actions apply and the next
matching rule is looked for. Actions merge with ``Actions.merged`` (later rules override single
values, tags and notify accumulate), on top of ``defaults`` for new tickets.

Speed comes from not looking at most rules at all. At load time each rule gets index keys that any
matching message must produce (a channel, a recipient, a sender, a keyword of its subject or text,
a customer fact); a message's keys pick out the candidate rules, which are then tested in file
order. Rules without such keys are always candidates. Since a rule outside the candidates cannot
match, skipping it changes nothing, and file order keeps first-match-wins exact.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intake.envelope import Envelope
from routing.decision import Actions, AppliedRule
from routing.facts import Facts
from routing.rules.calendars import Calendar
from routing.rules.conditions import Cond
from routing.rules.customers import Directory
from routing.rules.message import Environment, Message
from routing.rules.templates import Template

if TYPE_CHECKING:
    from routing.rules.explain import Explanation

__all__ = ["CompiledRule", "Evaluation", "Queue", "RuleIndex", "RuleSet"]

_NO_ACTIONS = Actions()
_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class Queue:
    id: str
    name: str
    agents: tuple[str, ...] = ()
    assign: str | None = None  # "round_robin" | "least_loaded" | None
    description: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """The rules that applied, in order, and the merged actions."""

    applied: tuple[AppliedRule, ...]
    actions: Actions


@dataclass(frozen=True, eq=False)
class CompiledRule:
    position: int  # index in the file's rules list
    name: str
    event: str
    enabled: bool
    continue_: bool
    cond: Cond
    actions: Actions
    applied: AppliedRule
    line: int

    @property
    def path(self) -> str:
        return f"rules[{self.position}]"


class RuleIndex:
    """The enabled rules of one event, and which of them a message can possibly match."""

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = list(rules)
        self.tests = [r.cond.test for r in self.rules]
        self.stops = [not r.continue_ for r in self.rules]
        by_key: dict[Hashable, list[int]] = {}
        always: list[int] = []
        fields: set[str] = set()
        for i, rule in enumerate(self.rules):
            keys = rule.cond.index()
            if keys is None:
                always.append(i)
                continue
            for key in keys[1]:
                assert isinstance(key, tuple)
                fields.add(key[0])
                by_key.setdefault(key, []).append(i)
        self.by_key = {k: tuple(v) for k, v in by_key.items()}
        self.always = frozenset(always)
        # Cheap fields first is irrelevant to correctness; sorted for a stable iteration order.
        self.fields = tuple(sorted(fields))

    @property
    def indexed(self) -> int:
        return len(self.rules) - len(self.always)

    def candidates(self, m: Message) -> list[int]:
        found: set[int] = set(self.always)
        get = self.by_key.get
        for name in self.fields:
            for value in m.index_values(name):
                hit = get((name, value))
                if hit is not None:
                    found.update(hit)
        return sorted(found)

    def matching(self, m: Message) -> tuple[int, ...]:
        """Positions (in ``rules``) of the rules that apply, in order."""
        tests, stops = self.tests, self.stops
        chosen: list[int] = []
        for i in self.candidates(m):
            if tests[i](m):
                chosen.append(i)
                if stops[i]:
                    break
        return tuple(chosen)


@dataclass(eq=False)
class RuleSet:
    """A validated, compiled rules file. Immutable once built; safe to share between threads."""

    source: str
    digest: str  # sha256 of the file's text
    defaults: Actions
    default_language: str
    queues: Mapping[str, Queue]
    templates: Mapping[str, Template]
    calendars: Mapping[str, Calendar]
    directory: Directory
    rules: tuple[CompiledRule, ...]
    sla_policies: tuple[str, ...] = ()
    # Every file the rules were read from (the rules file, a customers CSV, template files):
    # the reloader watches them all.
    watched: tuple[Path, ...] = ()
    _env: Environment = field(default_factory=Environment)
    _indexes: dict[str, RuleIndex] = field(default_factory=dict)
    _results: dict[tuple[str, tuple[int, ...]], Evaluation] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        events: dict[str, list[CompiledRule]] = {}
        for rule in self.rules:
            if rule.enabled:
                events.setdefault(rule.event, []).append(rule)
        self._indexes = {event: RuleIndex(rules) for event, rules in events.items()}

    # -- evaluation ------------------------------------------------------------------------
    def message(self, envelope: Envelope, facts: Facts) -> Message:
        return Message(envelope, facts, self._env)

    def evaluate(self, envelope: Envelope, facts: Facts) -> Evaluation:
        index = self._indexes.get(facts.event)
        if index is None:
            return self.result(facts.event, ())
        return self.result(facts.event, index.matching(self.message(envelope, facts)))

    def result(self, event: str, chosen: tuple[int, ...]) -> Evaluation:
        """The evaluation for the given rules (positions in the event's index) having applied.

        Few distinct combinations of rules occur in practice, so results are cached: merging
        pydantic models costs more than finding the rules.
        """
        key = (event, chosen)
        found = self._results.get(key)
        if found is not None:
            return found
        actions = self.defaults if event == "new_ticket" else _NO_ACTIONS
        rules = self._indexes[event].rules if chosen else []
        for i in chosen:
            actions = actions.merged(rules[i].actions)
        evaluation = Evaluation(tuple(rules[i].applied for i in chosen), actions)
        with self._lock:
            if len(self._results) >= _CACHE_LIMIT:
                self._results.clear()
            self._results[key] = evaluation
        return evaluation

    def index_for(self, event: str) -> RuleIndex | None:
        return self._indexes.get(event)

    def explain(self, envelope: Envelope, facts: Facts) -> Explanation:
        from routing.rules.explain import explain

        return explain(self, envelope, facts)

    # -- other services ----------------------------------------------------------------------
    def customer_facts(self, address: str) -> dict[str, Any]:
        """Directory facts for a sender address (email: domain facts, then the address's own)."""
        return self.directory.lookup(address)

    def render_auto_reply(
        self, template: str, language: str | None, context: Mapping[str, str], channel: str | None = None
    ) -> tuple[str, str]:
        """(subject, body) of a template in the customer's language (or the default one), the
        channel's own variant when the template has one (``en.sms``)."""
        try:
            found = self.templates[template]
        except KeyError:
            raise KeyError(f"unknown auto-reply template {template!r}") from None
        return found.render(language, self.default_language, context, channel)

    def summary(self) -> str:
        def count(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        return (
            f"{self.source}: {count(len(self.rules), 'rule')}, {count(len(self.queues), 'queue')}, "
            f"{count(len(self.templates), 'template')} — OK"
        )
