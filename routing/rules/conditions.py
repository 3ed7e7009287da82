"""Conditions: check ``when:`` trees (reporting every mistake) and compile them to predicates.

A condition tree is a mapping. Each key is a field (``subject``, ``customer.tier``, ...) or a
combinator (``all``, ``any``, ``not``); the entries of one mapping must all hold. A field's value
is a scalar (equals), a list (in), or a mapping of operators that must all hold.

Compiled predicates read a ``Message``: the envelope and facts with every derived value (lower-cased
text, address keys, keyword hits) computed at most once per message, on first use. Each node also
knows how to explain a failure (for ``route explain``) and which index keys a message must produce
for it to possibly match (for the engine's candidate index).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.facts import HISTORY_FACTS, TICKET_FIELDS
from routing.rules.errors import Issue, Path, did_you_mean, format_path
from routing.rules.message import (
    ADDRESS_FIELDS,
    KEYWORD_FIELDS,
    Message,
    normalise,
)
from routing.rules.schema import PRIORITIES, STATUSES
from config.yamlpos import YamlDocument

__all__ = [
    "COMBINATORS",
    "FIELDS",
    "OPERATORS",
    "CompileContext",
    "Cond",
    "Failure",
    "IndexKeys",
    "compile_when",
]

FIELDS = (
    "channel",
    "from",
    "to",
    "subject",
    "text",
    "language",
    "has_attachment",
    "business_hours",
)
PREFIXED = ("header", "customer", "ticket")
COMBINATORS = ("all", "any", "not")
TEXT_OPERATORS = ("equals", "in", "contains", "contains_any", "matches", "startswith", "glob")
NUMBER_OPERATORS = ("gt", "gte", "lt", "lte")
OPERATORS = TEXT_OPERATORS + NUMBER_OPERATORS
# Directory facts most files use; columns of the customers directory are added to these.
BUILTIN_CUSTOMER_FACTS = ("name", "tier")


def channel_names() -> tuple[str, ...]:
    """The channels a ``channel:`` condition may name: those of the installed adapters (plus the
    shipped ones still to come, so a rules file can name them before they are connected)."""
    from intake.registry import adapter_classes

    shipped = ("email", "webform", "sms", "whatsapp", "voice", "slack", "chat")
    return tuple(dict.fromkeys((*shipped, *(c for cls in adapter_classes() for c in cls.channels))))


# (rank, keys): the message must produce one of ``keys`` for the condition to hold. Lower rank =
# more selective (a keyword or a sender address narrows far more than a channel does).
IndexKeys = tuple[int, frozenset[Hashable]]
Test = Callable[["Message"], bool]


# --------------------------------------------------------------------------------------------
# Compiled nodes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why a condition did not hold: where, what it wanted, what the message had."""

    path: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, got {self.actual}"


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show(values: tuple[str, ...]) -> str:
    if not values:
        return "nothing"
    if len(values) == 1:
        return repr(_short(values[0]))
    return (
        "["
        + ", ".join(repr(_short(v, 40)) for v in values[:5])
        + (", …]" if len(values) > 5 else "]")
    )


class Cond:
    """A compiled condition: ``test`` decides; ``failure`` explains; ``index`` narrows."""

    path: str
    test: Test
    cost: int

    def failure(self, m: Message) -> Failure | None:
        raise NotImplementedError

    def index(self) -> IndexKeys | None:
        return None


class Always(Cond):
    def __init__(self, path: str) -> None:
        self.path = path
        self.test = lambda m: True
        self.cost = 0

    def failure(self, m: Message) -> Failure | None:
        return None


class Leaf(Cond):
    def __init__(
        self,
        path: str,
        test: Test,
        *,
        expected: str,
        actual: Callable[[Message], str],
        cost: int,
        index: IndexKeys | None = None,
    ) -> None:
        self.path = path
        self.test = test
        self.cost = cost
        self.expected = expected
        self._actual = actual
        self._index = index

    def failure(self, m: Message) -> Failure | None:
        if self.test(m):
            return None
        return Failure(self.path, self.expected, self._actual(m))

    def index(self) -> IndexKeys | None:
        return self._index


class All(Cond):
    def __init__(self, path: str, children: list[Cond]) -> None:
        self.path = path
        self.children = children  # document order, for explanations
        self.cost = sum(c.cost for c in children)
        # Conditions have no side effects, so testing cheap ones first changes no outcome.
        self.test = _all_test([c.test for c in sorted(children, key=lambda c: c.cost)])

    def failure(self, m: Message) -> Failure | None:
        for child in self.children:
            found = child.failure(m)
            if found is not None:
                return found
        return None

    def index(self) -> IndexKeys | None:
        # Every child must hold, so any one child's keys are necessary: take the narrowest.
        options = [k for k in (c.index() for c in self.children) if k is not None]
        return min(options, key=lambda k: (k[0], len(k[1]))) if options else None


class AnyOf(Cond):
    def __init__(self, path: str, children: list[Cond]) -> None:
        self.path = path
        self.children = children
        self.cost = sum(c.cost for c in children)
        self.test = _any_test([c.test for c in sorted(children, key=lambda c: c.cost)])

    def failure(self, m: Message) -> Failure | None:
        failures = [c.failure(m) for c in self.children]
        if any(f is None for f in failures):
            return None
        first = failures[0]
        assert first is not None
        detail = f"; first: {first}" if len(failures) > 1 else f" ({first})"
        return Failure(self.path, f"any of {len(failures)} alternatives", f"none matched{detail}")

    def index(self) -> IndexKeys | None:
        # One of the children must hold: the union of their keys is necessary, if each has keys.
        options = [c.index() for c in self.children]
        if not options or any(k is None for k in options):
            return None
        keys: set[Hashable] = set()
        rank = 0
        for option in options:
            assert option is not None
            rank = max(rank, option[0])
            keys.update(option[1])
        return (rank, frozenset(keys))


class Not(Cond):
    def __init__(self, path: str, child: Cond) -> None:
        self.path = path
        self.child = child
        self.cost = child.cost
        inner = child.test
        self.test = lambda m: not inner(m)

    def failure(self, m: Message) -> Failure | None:
        if self.test(m):
            return None
        return Failure(self.path, "the inner condition not to hold", "it held")


def _all_test(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda m: first(m) and second(m)

    def test(m: Message) -> bool:
        for t in tests:
            if not t(m):
                return False
        return True

    return test


def _any_test(tests: list[Test]) -> Test:
    if len(tests) == 1:
        return tests[0]

    def test(m: Message) -> bool:
        for t in tests:
            if t(m):
                return True
        return False

    return test


# --------------------------------------------------------------------------------------------
# Checking and compiling
# --------------------------------------------------------------------------------------------


@dataclass
class CompileContext:
    """What checking a condition tree needs to know about the rest of the file."""

    doc: YamlDocument
    issues: list[Issue]
    event: str = "new_ticket"
    calendars: frozenset[str] = frozenset()
    default_calendar: str | None = None
    customer_facts: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    # Every keyword used by contains/contains_any on subject or text, per field: the engine
    # builds one matcher per field from these.
    keywords: dict[str, set[str]] = field(
        default_factory=lambda: {k: set() for k in KEYWORD_FIELDS}
    )
    regexes: dict[str, re.Pattern[str]] = field(default_factory=dict)

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.issues.append(self.doc.issue(path, message, key=key))


def compile_when(when: Mapping[str, Any], path: Path, ctx: CompileContext) -> Cond | None:
    """Check a ``when:`` mapping, recording every problem in ``ctx``; None when it had any."""
    before = len(ctx.issues)
    node = _mapping(when, path, ctx)
    if len(ctx.issues) != before:
        return None
    return node


def _fmt(path: Path) -> str:
    return format_path(path)


def _mapping(value: Any, path: Path, ctx: CompileContext) -> Cond:
    if not isinstance(value, dict):
        ctx.error(path, "must be a mapping of conditions, e.g. {subject: {contains: refund}}")
        return Always(_fmt(path))
    if not value:
        return Always(_fmt(path))
    children = [_entry(key, item, (*path, key), ctx) for key, item in value.items()]
    return children[0] if len(children) == 1 else All(_fmt(path), children)


def _entry(key: str, value: Any, path: Path, ctx: CompileContext) -> Cond:
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            ctx.error(path, f"{key} takes a non-empty list of conditions")
            return Always(_fmt(path))
        children = [_mapping(item, (*path, i), ctx) for i, item in enumerate(value)]
        return All(_fmt(path), children) if key == "all" else AnyOf(_fmt(path), children)
    if key == "not":
        return Not(_fmt(path), _mapping(value, path, ctx))
    if key == "business_hours":
        return _business_hours(value, path, ctx)
    if key == "has_attachment":
        if not isinstance(value, bool):
            ctx.error(path, "must be true or false")
            return Always(_fmt(path))
        return Leaf(
            _fmt(path),
            (lambda m: m.has_attachment) if value else (lambda m: not m.has_attachment),
            expected=str(value).lower(),
            actual=lambda m: str(m.has_attachment).lower(),
            cost=1,
        )
    field_key = _field_key(key, path, ctx)
    if field_key is None:
        return Always(_fmt(path))
    if isinstance(value, dict):
        if not value:
            ctx.error(path, "give at least one operator, e.g. {contains: refund}")
            return Always(_fmt(path))
        leaves = [_operator(field_key, op, arg, (*path, op), ctx) for op, arg in value.items()]
        return leaves[0] if len(leaves) == 1 else All(_fmt(path), leaves)
    if isinstance(value, list):
        return _operator(field_key, "in", value, path, ctx, shorthand=True)
    return _operator(field_key, "equals", value, path, ctx, shorthand=True)


def _field_key(key: str, path: Path, ctx: CompileContext) -> str | None:
    """``customer.tier`` → ``customer:tier``; None (and an error) for unknown names."""
    if key in FIELDS:
        return key
    prefix, dot, name = key.partition(".")
    if dot and prefix in PREFIXED:
        if not name:
            ctx.error(
                path,
                f"name the {prefix} field after the dot, e.g. {prefix}.{_EXAMPLE[prefix]}",
                key=True,
            )
            return None
        if prefix == "header":
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
                ctx.error(path, f"{name!r} is not a header name", key=True)
                return None
            return f"header:{name.lower()}"
        if prefix == "customer":
            known = ctx.customer_facts | set(BUILTIN_CUSTOMER_FACTS) | set(HISTORY_FACTS)
            if name not in known:
                ctx.error(
                    path,
                    f"unknown customer fact {name!r}{did_you_mean(name, sorted(known))}; known facts: "
                    + ", ".join(sorted(known)),
                    key=True,
                )
                return None
            return f"customer:{name}"
        if name not in TICKET_FIELDS:
            ctx.error(
                path,
                f"unknown ticket field {name!r}{did_you_mean(name, TICKET_FIELDS)}; known: {', '.join(TICKET_FIELDS)}",
                key=True,
            )
            return None
        if ctx.event == "new_ticket":
            ctx.error(
                path,
                f"{key} is only known in follow_up, sla_breach and status_changed rules (add on: follow_up)",
                key=True,
            )
            return None
        return f"ticket:{name}"
    if dot:
        close = difflib.get_close_matches(prefix, PREFIXED, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}.{name}'?)" if close else ""
        ctx.error(path, f"unknown condition {key!r}{hint}", key=True)
        return None
    hint = did_you_mean(key, FIELDS + COMBINATORS)
    if not hint and key.casefold() in _SYNONYMS:
        hint = f" (did you mean {_SYNONYMS[key.casefold()]!r}?)"
    ctx.error(path, f"unknown condition {key!r}{hint}", key=True)
    return None


# Words admins reach for that mean one of our fields.
_SYNONYMS = {
    "sender": "from",
    "recipient": "to",
    "recipients": "to",
    "body": "text",
    "message": "text",
    "lang": "language",
    "attachment": "has_attachment",
    "attachments": "has_attachment",
    "hours": "business_hours",
    "or": "any",
    "and": "all",
}


_EXAMPLE = {"header": "X-Priority", "customer": "tier", "ticket": "status"}


def _business_hours(value: Any, path: Path, ctx: CompileContext) -> Cond:
    calendar = ctx.default_calendar
    wanted: Any = value
    if isinstance(value, dict):
        for extra in value.keys() - {"calendar", "is"}:
            ctx.error(
                (*path, extra),
                f"unknown key {extra!r}{did_you_mean(extra, ('calendar', 'is'))}",
                key=True,
            )
        wanted = value.get("is", True)
        if "calendar" in value:
            calendar = value["calendar"]
            if not isinstance(calendar, str) or calendar not in ctx.calendars:
                ctx.error(
                    (*path, "calendar"),
                    f"unknown calendar {calendar!r}{did_you_mean(calendar, sorted(ctx.calendars))}"
                    + _declared("calendars", ctx.calendars),
                )
                return Always(_fmt(path))
        if not isinstance(wanted, bool):
            ctx.error((*path, "is"), "must be true or false")
            return Always(_fmt(path))
    elif not isinstance(value, bool):
        ctx.error(path, "must be true, false or {calendar: NAME, is: true}")
        return Always(_fmt(path))
    if calendar is None:
        if len(ctx.calendars) == 1:
            calendar = next(iter(ctx.calendars))
        else:
            ctx.error(
                path,
                "no calendar to check: declare one under calendars: (and name it in defaults.calendar"
                " when there are several) or write {calendar: NAME, is: true}",
            )
            return Always(_fmt(path))
    name = calendar
    if wanted:
        test: Test = lambda m: m.business_hours(name)
    else:
        test = lambda m: not m.business_hours(name)
    return Leaf(
        _fmt(path),
        test,
        expected=f"{'inside' if wanted else 'outside'} business hours ({name})",
        actual=lambda m: "inside" if m.business_hours(name) else "outside",
        cost=5,
    )


def _declared(what: str, names: Iterable[str]) -> str:
    listed = ", ".join(sorted(names))
    return f"; declared {what}: {listed}" if listed else f"; no {what} are declared"


_SCALARS = (str, int, float, bool)


def _operator(
    field_key: str, op: str, arg: Any, path: Path, ctx: CompileContext, *, shorthand: bool = False
) -> Cond:
    label = _fmt(path)
    if op not in OPERATORS:
        ctx.error(
            path,
            f"unknown operator {op!r}{did_you_mean(op, OPERATORS)}; operators: {', '.join(OPERATORS)}",
            key=True,
        )
        return Always(label)
    kind = field_key.partition(":")[0]
    if kind in ("channel", "language") and op not in ("equals", "in"):
        ctx.error(
            path,
            f"{field_key} is compared with a name or a list of names, not {op}",
            key=not shorthand,
        )
        return Always(label)
    if op in NUMBER_OPERATORS and kind not in ("customer", "ticket"):
        ctx.error(
            path, f"{op} compares numbers: use it on customer.<fact> or ticket.<field>", key=True
        )
        return Always(label)

    values = _operator_values(op, arg, path, ctx)
    if values is None:
        return Always(label)
    if not _check_values(field_key, op, values, path, ctx):
        return Always(label)
    return _leaf(field_key, op, values, label, ctx)


def _operator_values(op: str, arg: Any, path: Path, ctx: CompileContext) -> list[Any] | None:
    """The operator's argument as a list, after checking its shape."""
    if op == "equals":
        if not isinstance(arg, _SCALARS):
            ctx.error(path, "must be a single value (use a list for several)")
            return None
        return [arg]
    if op == "in":
        if not isinstance(arg, list) or not arg or not all(isinstance(v, _SCALARS) for v in arg):
            ctx.error(path, "in takes a non-empty list of values")
            return None
        return list(arg)
    if op in NUMBER_OPERATORS:
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            ctx.error(path, f"{op} takes a number")
            return None
        return [arg]
    if op in ("contains", "matches"):
        if not isinstance(arg, str) or not arg:
            ctx.error(path, f"{op} takes a non-empty text")
            return None
        return [arg]
    # contains_any takes a list; startswith and glob a text or a list
    items = arg if isinstance(arg, list) else [arg] if op != "contains_any" else None
    if items is None or not items or not all(isinstance(v, str) and v for v in items):
        form = "a non-empty list of words" if op == "contains_any" else "a text or a list of texts"
        ctx.error(path, f"{op} takes {form}")
        return None
    return list(items)


def _check_values(
    field_key: str, op: str, values: list[Any], path: Path, ctx: CompileContext
) -> bool:
    """Values that can be checked against what the file declares (channels, statuses, ...)."""
    if op not in ("equals", "in"):
        if op == "matches":
            try:
                ctx.regexes.setdefault(values[0], re.compile(values[0]))
            except re.error as exc:
                ctx.error(path, f"bad regular expression: {exc}")
                return False
        return True
    allowed: tuple[str, ...] | None = None
    what = ""
    if field_key == "channel":
        allowed, what = channel_names(), "channel"
    elif field_key == "ticket:status":
        allowed, what = STATUSES, "status"
    elif field_key == "ticket:priority":
        allowed, what = PRIORITIES, "priority"
    elif field_key == "ticket:queue":
        allowed, what = tuple(sorted(ctx.queues)), "queue"
    ok = True
    for i, value in enumerate(values):
        where = (*path, i) if op == "in" or len(values) > 1 else path
        if allowed is not None and (not isinstance(value, str) or value not in allowed):
            ctx.error(
                where,
                f"unknown {what} {value!r}{did_you_mean(value, allowed)}; one of: {', '.join(allowed)}",
            )
            ok = False
        elif field_key == "language" and not (
            isinstance(value, str) and re.fullmatch(r"[a-z]{2,3}", value)
        ):
            ctx.error(where, f"{value!r} is not a language code such as en, de or pt")
            ok = False
    return ok


def _leaf(field_key: str, op: str, values: list[Any], label: str, ctx: CompileContext) -> Leaf:
    kind = field_key.partition(":")[0]
    if op not in ("in", "contains_any") and len(values) == 1:
        expected = f"{op} {_literal(values[0])}"
    else:
        expected = f"{op} [" + ", ".join(_literal(v) for v in values) + "]"

    def actual(m: Message) -> str:
        return _show(m.raw(field_key))

    if op in ("equals", "in"):
        wanted = frozenset(s for v in values for s in normalise(v))
        index: IndexKeys | None = None
        if field_key in ADDRESS_FIELDS:
            rank = 1 if field_key == "from" else 2
            index = (rank, frozenset((field_key, w) for w in wanted))
            test: Test = _in_set(wanted, lambda m: m.address_keys(field_key))
        else:
            rank = {"channel": 4, "language": 3}.get(kind, 2)
            index = (rank, frozenset((field_key, w) for w in wanted))
            test = _in_set(wanted, lambda m: m.lowered(field_key))
        return Leaf(label, test, expected=expected, actual=actual, cost=1, index=index)

    if op in NUMBER_OPERATORS:
        bound = float(values[0])
        compare: Callable[[float], bool] = {
            "gt": lambda x: x > bound,
            "gte": lambda x: x >= bound,
            "lt": lambda x: x < bound,
            "lte": lambda x: x <= bound,
        }[op]
        return Leaf(
            label,
            lambda m: any(compare(x) for x in m.numbers(field_key)),
            expected=expected,
            actual=actual,
            cost=1,
        )

    if op in ("contains", "contains_any"):
        words = frozenset(v.casefold() for v in values)
        if field_key in KEYWORD_FIELDS:
            ctx.keywords[field_key].update(words)
            index = (1, frozenset((f"kw:{field_key}", w) for w in words))
            if len(words) == 1:
                (word,) = words
                test = lambda m: word in m.hits(field_key)
            else:
                test = lambda m: not words.isdisjoint(m.hits(field_key))
            return Leaf(label, test, expected=expected, actual=actual, cost=1, index=index)
        return Leaf(
            label,
            lambda m: any(w in s for s in m.lowered(field_key) for w in words),
            expected=expected,
            actual=actual,
            cost=2,
        )

    if op == "matches":
        regex = ctx.regexes[values[0]]
        return Leaf(
            label,
            lambda m: any(regex.search(s) is not None for s in m.raw(field_key)),
            expected=expected,
            actual=actual,
            cost=10,
        )

    if op == "startswith":
        prefixes = tuple(v.casefold() for v in values)
        return Leaf(
            label,
            lambda m: any(s.startswith(prefixes) for s in m.lowered(field_key)),
            expected=expected,
            actual=actual,
            cost=2,
        )

    # glob: shell-style patterns over the whole value, e.g. *@bigco.com, "*invoice*"
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(v.casefold())})" for v in values))
    return Leaf(
        label,
        lambda m: any(pattern.match(s) is not None for s in m.lowered(field_key)),
        expected=expected,
        actual=actual,
        cost=3,
    )


def _literal(value: Any) -> str:
    """A value as the admin wrote it in YAML (no Python escaping of backslashes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if "'" in value else f"'{value}'"
    return str(value)


def _in_set(wanted: frozenset[str], get: Callable[[Message], Iterable[str]]) -> Test:
    if len(wanted) == 1:
        (only,) = wanted

        def test_one(m: Message) -> bool:
            return only in get(m)

        return test_one

    def test(m: Message) -> bool:
        return not wanted.isdisjoint(get(m))

    return test
