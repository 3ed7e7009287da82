"""The channels file: which accounts of each channel Omnidesk connects to.

``load_channels(path)`` reads the YAML file (``OMNIDESK_CHANNELS_FILE``, default
``config/channels.yaml``) and validates it as strictly as the rules file. Each top-level section
belongs to one channel adapter (``imap:`` to email, ``forms:`` to the web form, ...), which gives
its model and its cross-checks (``Adapter.section``, ``settings_model``, ``check_section``); this
module knows no channel. Unknown keys, wrong types and unsafe settings are errors, and every
problem is reported at once, as ``FILE:LINE:COL: path.to.key: message``, in a ``ChannelsError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from config.issues import Issue, did_you_mean, format_path
from config.yamlpos import YamlDocument, parse_yaml

__all__ = [
    "ChannelsConfig",
    "ChannelsError",
    "channels_path",
    "configured_channels",
    "issue_at_parent",
    "load_channels",
    "parse_channels",
    "section_names",
]


class ChannelsError(Exception):
    """A channels file that cannot be used; ``errors`` lists every problem, formatted, in file order."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__(
            f"{count} error{'s' if count != 1 else ''} in the channels file:\n" + "\n".join(self.errors)
        )


@dataclass(frozen=True)
class ChannelsConfig:
    """The validated sections, by name; a section the file does not have reads as empty."""

    sections: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        if name in self.sections:
            return self.sections[name]
        owner = _owners().get(name)
        if owner is None:
            raise KeyError(f"no channel adapter owns a section {name!r}")
        return _empty(owner.settings_model)

    def __getattr__(self, name: str) -> Any:
        # ``config.imap``, ``config.forms``: the section of that name.
        if name.startswith("_") or name == "sections":
            raise AttributeError(name)
        try:
            return self.section(name)
        except KeyError:
            raise AttributeError(name) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelsConfig):
            return NotImplemented
        return _non_empty(self.sections) == _non_empty(other.sections)

    def __hash__(self) -> int:
        return hash(tuple(sorted(_non_empty(self.sections))))


def _non_empty(sections: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sections.items() if v not in (None, [], {})}


def _owners() -> dict[str, Any]:
    from intake.registry import adapter_classes

    return {cls.section: cls for cls in adapter_classes() if cls.section}


def section_names() -> tuple[str, ...]:
    return tuple(_owners())


def section_types() -> dict[str, Any]:
    return {name: cls.settings_model for name, cls in _owners().items()}


def _empty(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is list:
        return []
    if origin is dict:
        return {}
    return None


# --- loading ---------------------------------------------------------------------------------------
def channels_path(settings: Any) -> Path | None:
    """The channels file to read, or None when none is configured.

    The default path (``config/channels.yaml``) may be absent: a laptop with no mailboxes. A path
    set explicitly through ``OMNIDESK_CHANNELS_FILE`` must exist.
    """
    path = Path(settings.channels_file)
    default = type(settings).model_fields["channels_file"].default
    if not path.exists() and path == Path(default):
        return None
    return path


def configured_channels(
    settings: Any, *, environ: Mapping[str, str] | None = None, check_env: bool = True
) -> ChannelsConfig:
    """The channels of these settings (empty when no channels file is configured)."""
    path = channels_path(settings)
    if path is None:
        return ChannelsConfig()
    return load_channels(path, environ=environ, check_env=check_env)


def load_channels(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    check_env: bool = True,
) -> ChannelsConfig:
    """Read and validate a channels file; raise ``ChannelsError`` listing every problem.

    With ``check_env`` (the default) every secret a section names by environment variable must
    be set and non-empty.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChannelsError([f"{file}: no such file (set OMNIDESK_CHANNELS_FILE or create it)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelsError([f"{file}: cannot read: {exc}"]) from None
    return parse_channels(text, str(file), environ=environ, check_env=check_env, base_dir=file.parent)


def parse_channels(
    text: str,
    file: str = "<channels>",
    *,
    environ: Mapping[str, str] | None = None,
    check_env: bool = True,
    base_dir: Path | None = None,
) -> ChannelsConfig:
    """Validate channels YAML given as text (``load_channels`` without the file)."""
    doc = parse_yaml(text, file)
    issues: list[Issue] = list(doc.issues)
    data = doc.data
    if data is None:
        if issues:
            raise ChannelsError([str(i) for i in sorted(set(issues))])
        return ChannelsConfig()  # an empty file: no channels
    owners = _owners()
    sections: dict[str, Any] = {}
    if not isinstance(data, dict):
        issues.append(doc.issue((), "the channels file must be a mapping with sections such as "
                                    + ", ".join(f"{n}:" for n in owners)))
    else:
        env = os.environ if environ is None else environ
        for name, value in data.items():
            owner = owners.get(str(name))
            if owner is None:
                known = tuple(owners)
                issues.append(doc.issue(
                    (name,),
                    f"unknown key {name!r}{did_you_mean(name, known)}; known keys: {', '.join(known)}",
                    key=True,
                ))
                continue
            if value is None:
                value = _empty(owner.settings_model)  # "imap:" with nothing under it
            issues.extend(owner.check_section(doc, value, environ=env, base_dir=base_dir, check_env=check_env))
            try:
                sections[name] = TypeAdapter(owner.settings_model).validate_python(value, strict=True)
            except ValidationError as exc:
                issues.extend(_pydantic_issues(doc, exc, prefix=(name,)))
    if issues:
        raise ChannelsError([str(i) for i in sorted(set(issues))])
    if base_dir is not None:
        sections = {n: owners[n].finish_section(v, base_dir=base_dir) for n, v in sections.items()}
    return ChannelsConfig(sections)


def _pydantic_issues(doc: YamlDocument, exc: ValidationError, *, prefix: tuple[Any, ...] = ()) -> list[Issue]:
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        path = prefix + tuple(error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            key = str(path[-1])
            parent = tuple(path[:-1])
            known = _known_keys(parent)
            if key == "password" and parent and parent[0] == "imap":
                message = ("unknown key 'password': passwords never go in this file; put the password "
                           "in an environment variable and name it with password_env")
            else:
                message = f"unknown key {key!r}{did_you_mean(key, known)}"
                if known:
                    message += f"; known keys: {', '.join(known)}"
            issues.append(doc.issue(path, message, key=True))
        elif kind == "missing":
            issues.append(issue_at_parent(doc, path, "missing (this key is required)"))
        elif kind == "literal_error":
            expected = _literal_choices(error)
            got = error.get("input")
            message = f"must be one of {', '.join(expected)}"
            if isinstance(got, str):
                message = f"{got!r} is not allowed: " + message + did_you_mean(got, expected)
            issues.append(doc.issue(path, message))
        elif kind == "string_pattern_mismatch":
            issues.append(doc.issue(path, _pattern_message(path)))
        elif kind in ("model_type", "dict_type"):
            issues.append(doc.issue(path, "must be a mapping of keys (name:, host:, ...)"))
        elif kind == "list_type":
            issues.append(doc.issue(path, "must be a list of entries, each starting with '- name:'"))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            issues.append(doc.issue(path, message[:1].lower() + message[1:]))
    return issues


def _known_keys(parent: tuple[Any, ...]) -> tuple[str, ...]:
    """The keys allowed where ``parent`` points: the top level's sections, or a model's fields."""
    if not parent:
        return section_names()
    sections = section_types()
    annotation: Any = sections.get(str(parent[0]))
    for part in parent[1:]:
        annotation = _step(annotation, part)
    model = _model_of(annotation)
    return tuple(model.model_fields) if model is not None else ()


def _step(annotation: Any, part: Any) -> Any:
    """The annotation one path step below ``annotation`` (a list item, a dict value, a field)."""
    if annotation is None:
        return None
    if isinstance(part, int):
        args = get_args(annotation)
        return args[0] if args else None
    model = _model_of(annotation)
    if model is not None and part in model.model_fields:
        return model.model_fields[part].annotation
    args = get_args(annotation)
    return args[-1] if get_origin(annotation) is dict and args else None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _literal_choices(error: Any) -> list[str]:
    expected = str((error.get("ctx") or {}).get("expected", ""))
    return [part.strip(" '") for part in expected.replace(" or ", ", ").split(",") if part.strip(" '")]


def _pattern_message(path: tuple[Any, ...]) -> str:
    key = path[-1] if path else ""
    if key == "name":
        return "must be a short name of letters, digits, '.', '_' or '-' (used in logs and intake sources)"
    if key == "password_env":
        return "must be the name of an environment variable, such as OMNIDESK_IMAP_SUPPORT_PASSWORD"
    if key == "address":
        return "must be an email address, such as support@example.com"
    return "has an invalid format"


def issue_at_parent(doc: YamlDocument, path: tuple[str | int, ...], message: str) -> Issue:
    """An issue about a key that is not in the file: shown where the key belongs."""
    line, column = doc.position(path[:-1])
    return Issue(doc.file, line, column, format_path(path), message)
