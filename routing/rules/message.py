"""A message as conditions see it: the envelope and its facts, each derived value computed once.

Thousands of rules may test the same message; lower-casing its text, splitting its sender's
domain or scanning it for keywords must not happen per rule. ``Message`` computes each derived
value on first use and keeps it for the rest of the evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from intake.envelope import Envelope
from routing.facts import Facts
from routing.rules.calendars import Calendar

__all__ = [
    "ADDRESS_FIELDS",
    "KEYWORD_FIELDS",
    "Environment",
    "KeywordMatcher",
    "Message",
    "normalise",
]

KEYWORD_FIELDS = ("subject", "text")  # scanned once per message for all keywords of all rules
ADDRESS_FIELDS = ("from", "to")


def normalise(value: Any) -> tuple[str, ...]:
    """A fact or expected value as the case-folded strings conditions compare.

    Facts come from YAML, CSV files (all text) and the store (numbers, lists), so ``3``, ``"3"``
    and ``3.0`` must compare equal, and ``True`` as ``"true"``. A list stands for each element.
    """
    if value is None:
        return ()
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, int):
        return (str(value),)
    if isinstance(value, float):
        return (str(int(value)) if value.is_integer() else repr(value),)
    if isinstance(value, str):
        return (value.casefold(),)
    if isinstance(value, (list, tuple, set, frozenset)):
        out: list[str] = []
        for item in value:
            out.extend(normalise(item))
        return tuple(out)
    return (str(value).casefold(),)


def _raw_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(s for item in value for s in _raw_strings(item))
    if isinstance(value, bool):
        return ("true" if value else "false",)
    return (str(value),)


def _numbers(value: Any) -> tuple[float, ...]:
    out: list[float] = []
    for item in value if isinstance(value, (list, tuple, set, frozenset)) else (value,):
        if isinstance(item, bool) or item is None:
            continue
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        if not math.isnan(number):
            out.append(number)
    return tuple(out)


def _address_keys(address: str) -> Iterable[str]:
    """``ana@mail.bigco.com`` → itself, ``mail.bigco.com``, ``bigco.com``, ``com``.

    So ``from: bigco.com`` matches the domain and its subdomains, ``from: ana@bigco.com`` the
    address, and ``from: "+4915112345678"`` a phone number, all by one set lookup.
    """
    yield address
    _, at, domain = address.rpartition("@")
    if at and domain:
        parts = domain.split(".")
        for i in range(len(parts)):
            yield ".".join(parts[i:])


class KeywordMatcher:
    """Finds which of many keywords occur in a text, in one pass (Aho-Corasick).

    With thousands of ``contains_any`` rules, testing each keyword with ``in`` would scan the text
    thousands of times; the automaton scans it once whatever the number of keywords. Without
    ``pyahocorasick`` installed we fall back to one ``in`` per keyword (same answers, slower).
    """

    def __init__(self, keywords: Iterable[str]) -> None:
        self.keywords = frozenset(keywords)
        self._automaton: Any = None
        try:
            import ahocorasick
        except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
            return
        automaton = ahocorasick.Automaton()
        for keyword in self.keywords:
            automaton.add_word(keyword, keyword)
        if self.keywords:
            automaton.make_automaton()
            self._automaton = automaton

    def find(self, text: str) -> frozenset[str]:
        if not self.keywords or not text:
            return frozenset()
        if self._automaton is not None:
            return frozenset(keyword for _, keyword in self._automaton.iter(text))
        return frozenset(k for k in self.keywords if k in text)

    def without_automaton(self) -> KeywordMatcher:
        """The pure-Python variant, for tests that check both give the same answers."""
        clone = KeywordMatcher.__new__(KeywordMatcher)
        clone.keywords = self.keywords
        clone._automaton = None
        return clone


@dataclass
class Environment:
    """What compiled conditions need from their rule set at evaluation time."""

    calendars: dict[str, Calendar] = field(default_factory=dict)
    matchers: dict[str, KeywordMatcher] = field(default_factory=dict)


class Message:
    """One envelope plus its facts, with derived values computed lazily and once."""

    def __init__(self, envelope: Envelope, facts: Facts, env: Environment) -> None:
        self.envelope = envelope
        self.facts = facts
        self.env = env
        self._lowered: dict[str, tuple[str, ...]] = {}
        self._raw: dict[str, tuple[str, ...]] = {}
        self._hits: dict[str, frozenset[str]] = {}
        self._keys: dict[str, frozenset[str]] = {}
        self._hours: dict[str, bool] = {}

    # -- plain fields --------------------------------------------------------------------
    @cached_property
    def text(self) -> str:
        # ``text`` is the new content; a channel that did not split quotes leaves it empty.
        return self.envelope.text or self.envelope.full_text

    @cached_property
    def language(self) -> str | None:
        value = self.facts.language or self.envelope.language
        return value.casefold() if value else None

    @cached_property
    def has_attachment(self) -> bool:
        # Inline parts are mostly signature logos; they are not what "has an attachment" means.
        return any(not a.inline for a in self.envelope.attachments)

    def raw(self, key: str) -> tuple[str, ...]:
        """The field's values as the customer wrote them (for ``matches`` and explanations)."""
        try:
            return self._raw[key]
        except KeyError:
            value = self._raw[key] = self._compute_raw(key)
            return value

    def lowered(self, key: str) -> tuple[str, ...]:
        try:
            return self._lowered[key]
        except KeyError:
            if key.startswith(("customer:", "ticket:")):
                value = normalise(self._fact(key))
            else:
                value = tuple(s.casefold() for s in self.raw(key))
            self._lowered[key] = value
            return value

    def numbers(self, key: str) -> tuple[float, ...]:
        return _numbers(self._fact(key))

    def _fact(self, key: str) -> Any:
        kind, _, name = key.partition(":")
        if kind == "customer":
            return self.facts.customer.get(name)
        if kind == "ticket":
            return None if self.facts.ticket is None else self.facts.ticket.get(name)
        return self.raw(key)

    def _compute_raw(self, key: str) -> tuple[str, ...]:
        env = self.envelope
        if key == "subject":
            return (env.subject,)
        if key == "text":
            return (self.text,)
        if key == "from":
            return (env.sender.address,)
        if key == "to":
            return tuple(p.address for p in env.recipients)
        if key == "channel":
            return (env.channel,)
        if key == "language":
            return (self.language,) if self.language else ()
        if key.startswith("header:"):
            value = env.headers.get(key[7:])
            return () if value is None else (value,)
        return _raw_strings(self._fact(key))

    # -- derived sets ----------------------------------------------------------------------
    def hits(self, key: str) -> frozenset[str]:
        """The keywords (of any rule) that occur in a subject or text: one scan per message."""
        try:
            return self._hits[key]
        except KeyError:
            matcher = self.env.matchers.get(key)
            found = matcher.find(self.lowered(key)[0]) if matcher is not None else frozenset()
            self._hits[key] = found
            return found

    def address_keys(self, key: str) -> frozenset[str]:
        try:
            return self._keys[key]
        except KeyError:
            value = frozenset(k for a in self.lowered(key) for k in _address_keys(a))
            self._keys[key] = value
            return value

    def business_hours(self, calendar: str) -> bool:
        try:
            return self._hours[calendar]
        except KeyError:
            value = self._hours[calendar] = self.env.calendars[calendar].is_open(self.facts.now)
            return value

    def index_values(self, key: str) -> Iterable[str]:
        """What this message offers to the candidate index under one field key."""
        if key.startswith("kw:"):
            return self.hits(key[3:])
        if key in ADDRESS_FIELDS:
            return self.address_keys(key)
        return self.lowered(key)
