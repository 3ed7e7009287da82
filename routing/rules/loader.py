"""Load a rules file: parse with positions, validate everything, report every error, compile.

Validation runs section by section and item by item, so that one broken rule does not hide the
errors of the next one, and cross-references (queues, templates, calendars, SLA policies) are
checked against names collected leniently from the raw file, so that one broken queue does not
make every rule that uses it an error too. Only a file with no error at all is compiled.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path as FsPath
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from routing.decision import Actions, AppliedRule
from routing.facts import EVENTS
from routing.rules.calendars import Calendar
from routing.rules.conditions import CompileContext, Cond, compile_when
from routing.rules.customers import Directory, parse_csv, parse_inline
from routing.rules.engine import CompiledRule, Queue, RuleSet
from routing.rules.errors import Issue, Path, RulesError, did_you_mean, format_path
from routing.rules.message import Environment, KeywordMatcher
from routing.rules.roster import agent_warnings
from routing.rules.schema import (
    TOP_LEVEL_KEYS,
    ActionsSpec,
    CalendarSpec,
    DefaultsSpec,
    QueueSpec,
    RuleSpec,
    SlaPolicySpec,
    TemplateVariant,
)
from routing.rules.templates import (
    Template,
    TemplateText,
    load_template_folder,
    parse_template_text,
)
from config.yamlpos import YamlDocument, parse_yaml

__all__ = ["check_rules_file", "load_rules", "load_rules_text"]

_REQUIRED = ("version", "defaults", "queues")
_NAME_HINT = "a lower-case name (letters, digits, - and _)"
_PATTERN_MESSAGES = {
    "^[a-z0-9][a-z0-9_-]*$": f"must be {_NAME_HINT}",
    "^[a-z]{2,3}$": "must be a language code such as en, de or pt",
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "must be an email address",
    r"^\d+\s*[mhd]$": "must be a duration such as 30m, 4h or 2d",
}
_TYPE_MESSAGES = {
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "list_type": "must be a list, e.g. [a, b]",
    "dict_type": "must be a mapping (key: value lines)",
    "model_type": "must be a mapping (key: value lines)",
    "model_attributes_type": "must be a mapping (key: value lines)",
    "date_type": "must be a date like 2026-12-25",
    "date_from_datetime_inexact": "must be a date like 2026-12-25 (no time)",
}
_UNION_TAGS = {
    "str": "a text",
    "bool": "true or false",
    "int": "a whole number",
    "list": "a list",
    "dict": "a mapping",
}


def load_rules(path: FsPath) -> RuleSet:
    """Load and compile a rules file; raises RulesError listing every problem."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError([Issue(shown, 1, 1, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([Issue(shown, 1, 1, "", f"cannot read the rules file: {exc}")]) from None
    return load_rules_text(text, shown, base_dir=path.parent, path=path)


def load_rules_text(
    text: str,
    filename: str = "<rules>",
    *,
    base_dir: FsPath | None = None,
    path: FsPath | None = None,
) -> RuleSet:
    """Load rules from text; files it names (a CSV, a template folder) resolve from ``base_dir``."""
    with _gc_paused():
        return _Loader(text, filename, base_dir or FsPath.cwd(), path).load()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading allocates a few hundred thousand long-lived objects (nodes, models, closures);
    the cyclic collector would rescan them all again and again, doubling a 10,000-rule load."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check_rules_file(path: FsPath, *, roster: Mapping[str, bool] | None = None) -> tuple[int, str]:
    """``omnidesk rules check``: (0, one-line summary) or (1, every error and a count).

    With ``roster`` (the store's agents: lower-cased email → active), agents the file names that
    are unknown or inactive follow the summary as warnings; the status stays 0, since such a file
    loads and routes (see ``routing.rules.roster``).
    """
    try:
        ruleset = load_rules(path)
    except RulesError as exc:
        count = len(exc.errors)
        return 1, "\n".join(exc.errors) + f"\n{path}: {count} error{'s' if count != 1 else ''}"
    lines = [ruleset.summary()]
    if roster is not None:
        warnings = agent_warnings(ruleset, roster, path)
        lines += [f"warning: {issue}" for issue in warnings]
        if warnings:
            lines.append(f"{path}: {len(warnings)} warning{'s' if len(warnings) != 1 else ''} about agents "
                         "(the rules still load and route)")
    return 0, "\n".join(lines)


class _Loader:
    def __init__(self, text: str, filename: str, base_dir: FsPath, path: FsPath | None) -> None:
        self.text = text
        self.filename = filename
        self.base_dir = base_dir
        self.watched: list[FsPath] = [path] if path is not None else []
        self.issues: list[Issue] = []
        self.doc = YamlDocument(filename, None, None)

    # -- driver --------------------------------------------------------------------------------
    def load(self) -> RuleSet:
        self.doc = parse_yaml(self.text, self.filename)
        self.issues.extend(self.doc.issues)
        data = self.doc.data
        if self.doc.root is None and not self.issues:
            self.fail_at((), "the file is empty: it needs version, defaults, queues and rules")
        elif self.doc.root is not None and not isinstance(data, dict):
            self.fail_at((), "the file must be a mapping with version, defaults, queues and rules")
        if self.issues:
            raise RulesError(sorted(set(self.issues)))
        assert isinstance(data, dict)
        ruleset = self.build(data)
        if ruleset is None and not self.issues:  # pragma: no cover - every refusal has a reason
            self.fail_at((), "the rules could not be compiled")
        if self.issues or ruleset is None:
            raise RulesError(sorted(set(self.issues)))
        return ruleset

    def fail_at(self, path: Path, message: str, *, key: bool = False) -> None:
        self.issues.append(self.doc.issue(path, message, key=key))

    # -- sections --------------------------------------------------------------------------------
    def build(self, data: dict[str, Any]) -> RuleSet | None:
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.fail_at(
                    (key,), f"unknown key {key!r}{did_you_mean(key, TOP_LEVEL_KEYS)}", key=True
                )
        for key in _REQUIRED:
            if key not in data:
                self.fail_at((), f"missing required key {key!r}")
        if "version" in data and (data["version"] != 1 or isinstance(data["version"], bool)):
            self.fail_at(("version",), "must be 1 (the only version of the rules format so far)")

        names = _Names.collect(data)
        defaults = (
            self.model(DefaultsSpec, data["defaults"], ("defaults",))
            if "defaults" in data
            else None
        )
        queues = self.queues(data["queues"]) if "queues" in data else None
        calendars = self.calendars(data.get("calendars", {}))
        sla = self.sla_policies(data.get("sla_policies", {}), names)
        default_language = defaults.language if defaults is not None else "en"
        templates = self.templates(data.get("templates", {}), default_language, names)
        directory = self.customers(data.get("customers"))
        self.check_defaults(data.get("defaults"), names)

        default_calendar = defaults.calendar if defaults is not None else None
        ctx = CompileContext(
            doc=self.doc,
            issues=self.issues,
            calendars=frozenset(names.calendars),
            default_calendar=default_calendar if default_calendar in names.calendars else None,
            customer_facts=frozenset(directory.facts),
            queues=frozenset(names.queues),
        )
        rules = self.rules(data.get("rules", []), names, ctx)
        if self.issues or defaults is None or queues is None or rules is None:
            return None

        env = Environment(
            calendars={name: Calendar.from_spec(name, spec) for name, spec in calendars.items()},
            matchers={fld: KeywordMatcher(words) for fld, words in ctx.keywords.items() if words},
        )
        return RuleSet(
            source=self.filename,
            digest=hashlib.sha256(self.text.encode("utf-8")).hexdigest(),
            defaults=Actions(
                queue=defaults.queue,
                priority=defaults.priority,
                auto_reply=defaults.auto_reply,
                sla=defaults.sla,
            ),
            default_language=default_language,
            queues={
                q.id: Queue(q.id, q.name or q.id, tuple(q.agents), q.assign, q.description)
                for q in queues
            },
            templates=templates,
            calendars=env.calendars,
            directory=directory,
            rules=tuple(rules),
            sla_policies=tuple(sla),
            watched=tuple(dict.fromkeys(self.watched)),
            _env=env,
        )

    def queues(self, raw: Any) -> list[QueueSpec] | None:
        if not isinstance(raw, list) or not raw:
            self.fail_at(
                ("queues",),
                "must be a non-empty list of queues, e.g. - {id: general, name: General}",
            )
            return None
        out: list[QueueSpec] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            spec = self.model(QueueSpec, item, ("queues", i))
            # Duplicates are judged on the raw id, so that a queue with another mistake still counts.
            queue_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(queue_id, str):
                if queue_id in seen:
                    self.fail_at(("queues", i, "id"), f"queue {queue_id!r} is declared twice")
                seen.add(queue_id)
            if spec is not None:
                out.append(spec)
        return out

    def calendars(self, raw: Any) -> dict[str, CalendarSpec]:
        out: dict[str, CalendarSpec] = {}
        for name, item in self.named_section(raw, "calendars"):
            spec = self.model(CalendarSpec, item, ("calendars", name))
            if spec is not None:
                out[name] = spec
        return out

    def sla_policies(self, raw: Any, names: _Names) -> list[str]:
        out: list[str] = []
        for name, item in self.named_section(raw, "sla_policies"):
            spec = self.model(SlaPolicySpec, item, ("sla_policies", name))
            if spec is None:
                continue
            if spec.calendar is not None and spec.calendar not in names.calendars:
                self.unknown(
                    ("sla_policies", name, "calendar"), "calendar", spec.calendar, names.calendars
                )
            out.append(name)
        return out

    def named_section(self, raw: Any, section: str) -> Iterable[tuple[str, Any]]:
        """A ``name: {...}`` section's entries, checking the names."""
        if raw is None or raw == {}:
            return []
        if not isinstance(raw, dict):
            self.fail_at((section,), "must be a mapping of names to settings")
            return []
        good = []
        for name, item in raw.items():
            if not _is_name(name):
                self.fail_at((section, name), f"{name!r} is not {_NAME_HINT}", key=True)
            else:
                good.append((name, item))
        return good

    def templates(self, raw: Any, default_language: str, names: _Names) -> dict[str, Template]:
        found: dict[str, dict[str, tuple[TemplateText, TemplateText]]] = {}
        if isinstance(raw, str):
            folder = (self.base_dir / raw).resolve()
            if not folder.is_dir():
                self.fail_at(("templates",), f"no template folder {raw!r} (looked in {folder})")
                return {}
            found, issues, files = load_template_folder(folder, raw)
            names.templates.update(found)
            self.issues.extend(issues)
            self.watched += [folder, *files]
            located = False
        elif raw is not None and not isinstance(raw, dict):
            self.fail_at(("templates",), "must be a mapping of templates or a folder's path")
            return {}
        else:
            located = True
            for name, variants in self.named_section(raw, "templates"):
                found[name] = self.template_variants(name, variants)
        for name, variants in found.items():
            if variants and not any(v.partition(".")[0] == default_language for v in variants):
                message = (
                    f"template {name!r} has no {default_language!r} variant (defaults.language); "
                    f"it has: {', '.join(sorted(variants))}"
                )
                if located:
                    self.fail_at(("templates", name), message, key=True)
                else:
                    self.issues.append(Issue(str(raw), 1, 1, f"templates.{name}", message))
        return {name: Template(name, variants) for name, variants in found.items() if variants}

    def template_variants(
        self, name: str, raw: Any
    ) -> dict[str, tuple[TemplateText, TemplateText]]:
        path: Path = ("templates", name)
        if not isinstance(raw, dict) or not raw:
            self.fail_at(
                path, "must map languages to {subject, body}, e.g. en: {subject: ..., body: ...}"
            )
            return {}
        out: dict[str, tuple[TemplateText, TemplateText]] = {}
        for lang, item in raw.items():
            # "en", or "en.sms": the English variant for one channel (short for SMS, say).
            code, _, channel = lang.partition(".") if isinstance(lang, str) else ("", "", "")
            if not (
                code.isalpha() and code.islower() and 2 <= len(code) <= 3
                and (not channel or re.fullmatch(r"[a-z][a-z0-9_-]{0,19}", channel))
            ):
                self.fail_at(
                    (*path, lang),
                    f"{lang!r} is not a language code such as en, de or pt (or a language and a "
                    "channel, such as en.sms)",
                    key=True,
                )
                continue
            spec = self.model(TemplateVariant, item, (*path, lang))
            if spec is None:
                continue
            subject = self.template_text(spec.subject, (*path, lang, "subject"))
            body = self.template_text(spec.body, (*path, lang, "body"))
            if subject is not None and body is not None:
                out[lang] = (subject, body)
        return out

    def template_text(self, text: str, path: Path) -> TemplateText | None:
        parsed, problems = parse_template_text(text)
        for offset, message in problems:
            line, column = self.doc.text_position(path, offset)
            self.issues.append(Issue(self.filename, line, column, format_path(path), message))
        return parsed

    def customers(self, raw: Any) -> Directory:
        if raw is None:
            return Directory()
        if isinstance(raw, list):
            directory, issues = parse_inline(raw, self.doc, ("customers",))
            self.issues.extend(issues)
            return directory
        if isinstance(raw, str):
            csv_path = (self.base_dir / raw).resolve()
            try:
                text = csv_path.read_text(encoding="utf-8-sig")
            except FileNotFoundError:
                self.fail_at(("customers",), f"no customers file {raw!r} (looked for {csv_path})")
                return Directory()
            except (OSError, UnicodeDecodeError) as exc:
                self.fail_at(("customers",), f"cannot read {raw!r}: {exc}")
                return Directory()
            self.watched.append(csv_path)
            directory, issues = parse_csv(text, raw)
            self.issues.extend(issues)
            return directory
        self.fail_at(("customers",), "must be a list of customers or the path of a CSV file")
        return Directory()

    def check_defaults(self, raw: Any, names: _Names) -> None:
        if not isinstance(raw, dict):
            return
        self.check_refs(raw, ("defaults",), names, event="new_ticket")
        calendar = raw.get("calendar")
        if isinstance(calendar, str) and calendar not in names.calendars:
            self.unknown(("defaults", "calendar"), "calendar", calendar, names.calendars)

    def rules(self, raw: Any, names: _Names, ctx: CompileContext) -> list[CompiledRule] | None:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.fail_at(("rules",), "must be a list of rules (each starting with '- name: ...')")
            return None
        compiled: list[CompiledRule] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(raw):
            path: Path = ("rules", i)
            spec = self.model(RuleSpec, item, path)
            if not isinstance(item, dict):
                continue
            event = item.get("on", "new_ticket")
            event = event if event in EVENTS else "new_ticket"
            name = item.get("name")
            if isinstance(name, str) and name:
                folded = name.strip().casefold()
                if folded in seen:
                    line = self.doc.position(("rules", seen[folded], "name"))[0]
                    self.fail_at(
                        (*path, "name"), f"duplicate rule name {name!r} (first used on line {line})"
                    )
                else:
                    seen[folded] = i
            then = item.get("then")
            if isinstance(then, dict):
                self.check_refs(then, (*path, "then"), names, event=event)
            when = item.get("when", {})
            cond: Cond | None = None
            if isinstance(when, dict):
                ctx.event = event
                cond = compile_when(when, (*path, "when"), ctx)
            if spec is None or cond is None:
                continue
            actions, applied = _actions(spec)
            compiled.append(
                CompiledRule(
                    position=i,
                    name=spec.name,
                    event=spec.on,
                    enabled=spec.enabled,
                    continue_=spec.continue_,
                    cond=cond,
                    actions=actions,
                    applied=AppliedRule(name=spec.name, actions=applied),
                    line=self.doc.position(path)[0],
                )
            )
        return compiled

    def check_refs(self, raw: dict[str, Any], path: Path, names: _Names, *, event: str) -> None:
        """Names an action (or a default) uses must be declared elsewhere in the file."""
        queue = raw.get("queue")
        if isinstance(queue, str) and queue not in names.queues:
            self.unknown((*path, "queue"), "queue", queue, names.queues)
        reply = raw.get("auto_reply")
        if isinstance(reply, str) and reply not in names.templates:
            self.unknown((*path, "auto_reply"), "template", reply, names.templates)
        sla = raw.get("sla")
        if isinstance(sla, str) and sla not in names.sla:
            self.unknown((*path, "sla"), "SLA policy", sla, names.sla, section="sla_policies")
        if "status" in raw and event in ("new_ticket", "status_changed"):
            # A status_changed rule that set the status would trigger itself.
            self.fail_at(
                (*path, "status"),
                "status can only be set by follow_up and sla_breach rules",
                key=True,
            )

    def unknown(
        self, path: Path, what: str, value: str, known: Iterable[str], *, section: str | None = None
    ) -> None:
        known = sorted(known)
        listing = (
            f"; declared: {', '.join(known)}"
            if known
            else f"; declare it under {section or what + 's'}:"
        )
        self.fail_at(path, f"unknown {what} {value!r}{did_you_mean(value, known)}{listing}")

    # -- pydantic errors, positioned --------------------------------------------------------------
    def model(self, cls: type[BaseModel], value: Any, path: Path) -> Any:
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            self.issues.extend(self.pydantic_issues(exc, cls, value, path))
            return None

    def pydantic_issues(
        self, exc: ValidationError, cls: type[BaseModel], value: Any, base: Path
    ) -> list[Issue]:
        by_path: dict[tuple[Path, bool], list[tuple[str, dict[str, Any], tuple[Any, ...]]]] = {}
        for error in exc.errors():
            loc, rest = _split_loc(value, tuple(error["loc"]))
            key = error["type"] in ("extra_forbidden",) or (rest[:1] == ("[key]",))
            by_path.setdefault((loc, key), []).append((error["type"], dict(error), rest))
        issues = []
        for (loc, key), errors in by_path.items():
            message = self.message(cls, value, loc, errors)
            issues.append(self.doc.issue((*base, *loc), message, key=key))
        return issues

    def message(
        self,
        cls: type[BaseModel],
        value: Any,
        loc: Path,
        errors: list[tuple[str, dict[str, Any], tuple[Any, ...]]],
    ) -> str:
        kind, error, rest = errors[0]
        given = error.get("input")
        if kind == "missing":
            return f"missing required key {rest[0]!r}" if rest else "missing required value"
        if kind == "extra_forbidden":
            name = loc[-1] if loc else ""
            allowed = _fields_at(cls, loc[:-1])
            return f"unknown key {name!r}{did_you_mean(name, allowed)}" + (
                f"; allowed: {', '.join(allowed)}" if allowed else ""
            )
        if len(errors) > 1 and all(r and not str(r[0]).startswith("[") for _, _, r in errors):
            # A union (e.g. text or list) rejected the value: name the forms it accepts.
            forms = [_UNION_TAGS.get(str(r[0]).split("[")[0], str(r[0])) for _, _, r in errors]
            return f"must be {' or '.join(dict.fromkeys(forms))}, not {_given(given)}"
        if kind == "literal_error":
            expected = _quoted(str(error.get("ctx", {}).get("expected", "")))
            return f"must be one of: {', '.join(expected)}{did_you_mean(given, expected)}; not {_given(given)}"
        if kind == "string_pattern_mismatch":
            pattern = str(error.get("ctx", {}).get("pattern", ""))
            return f"{_PATTERN_MESSAGES.get(pattern, 'has the wrong form')}, not {_given(given)}"
        if kind in _TYPE_MESSAGES:
            return f"{_TYPE_MESSAGES[kind]}, not {_given(given)}"
        if kind == "string_too_short":
            return "must not be empty"
        if kind == "too_short":
            return "must not be empty"
        if kind == "string_too_long":
            return f"is too long (at most {error.get('ctx', {}).get('max_length')} characters)"
        if kind == "value_error":
            return str(error["msg"]).removeprefix("Value error, ")
        return str(error["msg"])


class _Names:
    """Names declared in the file, collected leniently (even from entries with other errors)."""

    def __init__(self) -> None:
        self.queues: set[str] = set()
        self.templates: set[str] = set()
        self.calendars: set[str] = set()
        self.sla: set[str] = set()

    @classmethod
    def collect(cls, data: dict[str, Any]) -> _Names:
        names = cls()
        for item in data.get("queues") or [] if isinstance(data.get("queues"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                names.queues.add(item["id"])
        for section, target in (
            ("templates", names.templates),
            ("calendars", names.calendars),
            ("sla_policies", names.sla),
        ):
            value = data.get(section)
            if isinstance(value, dict):
                target.update(k for k in value if isinstance(k, str))
        return names


def _is_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value) is not None
        and len(value) <= 64
    )


def _split_loc(value: Any, loc: tuple[Any, ...]) -> tuple[Path, tuple[Any, ...]]:
    """Split a pydantic error location into the part that exists in the data and the rest.

    The rest is a missing key's name, ``[key]`` for a bad mapping key, or union member tags.
    """
    path: list[str | int] = []
    current = value
    for i, part in enumerate(loc):
        in_mapping = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if not (in_mapping or in_list):
            return tuple(path), loc[i:]
        current = current[part]
        path.append(part)
    return tuple(path), ()


def _fields_at(cls: type[BaseModel], loc: Path) -> list[str]:
    """The keys allowed in the mapping at ``loc`` inside a ``cls`` value."""
    current: Any = cls
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = next(
            (f for n, f in current.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _quoted(text: str) -> list[str]:
    return re.findall(r"'([^']*)'", text)


def _given(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (empty)"
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"


def _actions(spec: RuleSpec) -> tuple[Actions, dict[str, Any]]:
    then: ActionsSpec = spec.then
    given = then.model_dump(exclude_none=True)
    data: dict[str, Any] = dict(given)
    for key in ("tags", "notify"):
        if key in data:
            data[key] = tuple(dict.fromkeys(data[key]))
    return Actions(**data), {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
