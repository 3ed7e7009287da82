"""Auto-reply templates: per-language variants with ``{placeholder}`` fields.

Templates live in the rules file (``templates: {ack: {en: {subject, body}}}``) or in a folder it
names (``templates: templates/``) holding one file per variant, ``NAME.LANG.txt``::

    Subject: We got your message [{ticket_ref}]

    Hello {customer_name}, ...

A placeholder the router does not fill, or a brace left open, is a load-time error: a customer must
never receive "Dear {custmer_name}".
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from routing.rules.errors import Issue, did_you_mean
from routing.rules.schema import PLACEHOLDERS

__all__ = ["Template", "TemplateText", "load_template_folder", "parse_template_text"]

_FORMATTER = string.Formatter()
_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.(?P<lang>[a-z]{2,3})\.txt$")


@dataclass(frozen=True)
class TemplateText:
    """One subject or body, split into literal text and placeholder names."""

    pieces: tuple[tuple[str, str | None], ...]

    def render(self, context: Mapping[str, str]) -> str:
        # A placeholder the caller has no value for renders empty rather than failing the reply.
        return "".join(
            text + (str(context.get(name, "")) if name else "") for text, name in self.pieces
        )


def parse_template_text(text: str) -> tuple[TemplateText | None, list[tuple[int, str]]]:
    """Parse ``text``; problems come back as (offset into text, message)."""
    problems: list[tuple[int, str]] = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        where = _unmatched_brace(text)
        return None, [(where, f"{exc}: write {{{{ or }}}} for a literal brace")]
    pieces: list[tuple[str, str | None]] = []
    offset = 0
    for literal, name, spec, conversion in parsed:
        offset += len(literal.replace("{", "{{").replace("}", "}}"))
        if name is None:
            pieces.append((literal, None))
            continue
        shown = (
            "{"
            + name
            + (f"!{conversion}" if conversion else "")
            + (f":{spec}" if spec else "")
            + "}"
        )
        if not name:
            problems.append((offset, "empty placeholder {}: name one, e.g. {ticket_ref}"))
        elif name not in PLACEHOLDERS:
            problems.append(
                (
                    offset,
                    f"unknown placeholder {shown}{did_you_mean(name, PLACEHOLDERS)}; known: "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
                )
            )
        elif spec or conversion:
            problems.append((offset, f"placeholder {shown} takes no format: write {{{name}}}"))
        pieces.append((literal, name))
        offset += len(shown)
    if problems:
        return None, problems
    return TemplateText(tuple(pieces)), []


def _unmatched_brace(text: str) -> int:
    depth_open = -1
    i = 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("{{", "}}"):
            i += 2
            continue
        if text[i] == "{":
            if depth_open >= 0:
                return depth_open
            depth_open = i
        elif text[i] == "}":
            if depth_open < 0:
                return i
            depth_open = -1
        i += 1
    return max(depth_open, 0)


@dataclass(frozen=True)
class Template:
    name: str
    variants: Mapping[str, tuple[TemplateText, TemplateText]]  # language → (subject, body)

    def variant(
        self, language: str | None, default_language: str, channel: str | None = None
    ) -> tuple[TemplateText, TemplateText]:
        """The customer's language, else its base language (pt-br → pt), else the default; for
        each, the channel's own variant (``en.sms``) first when there is one."""
        languages: list[str] = []
        if language:
            wanted = language.casefold().replace("_", "-")
            languages += [wanted, wanted.split("-")[0]]
        languages.append(default_language)
        for candidate in dict.fromkeys(languages):
            for key in ((f"{candidate}.{channel}",) if channel else ()) + (candidate,):
                if key in self.variants:
                    return self.variants[key]
        return next(iter(self.variants.values()))

    def render(
        self,
        language: str | None,
        default_language: str,
        context: Mapping[str, str],
        channel: str | None = None,
    ) -> tuple[str, str]:
        subject, body = self.variant(language, default_language, channel)
        # Subjects are one line: a newline in a value (a customer's subject) must not break it.
        return " ".join(subject.render(context).split()), body.render(context)


def _line_col(text: str, offset: int, first_line: int) -> tuple[int, int]:
    before = text[:offset]
    line = first_line + before.count("\n")
    column = offset - (before.rfind("\n") + 1) + 1
    return line, column


def load_template_folder(
    folder: Path, shown: str
) -> tuple[dict[str, dict[str, tuple[TemplateText, TemplateText]]], list[Issue], list[Path]]:
    """Read ``NAME.LANG.txt`` files; ``shown`` is the folder as errors should name it."""
    found: dict[str, dict[str, tuple[TemplateText, TemplateText]]] = {}
    issues: list[Issue] = []
    files: list[Path] = []
    for path in sorted(folder.iterdir()):
        # Only .txt files are templates: a README or an editor's backup beside them is not.
        if path.name.startswith(".") or path.is_dir() or path.suffix != ".txt":
            continue
        where = f"{shown.rstrip('/')}/{path.name}"
        match = _FILE_NAME.match(path.name)
        if not match:
            issues.append(
                Issue(where, 1, 1, "", "template files are named NAME.LANG.txt, e.g. ack.en.txt")
            )
            continue
        files.append(path)
        name, lang = match.group("name"), match.group("lang")
        variants = found.setdefault(name, {})  # known by name even if a variant is broken
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(Issue(where, 1, 1, "", f"cannot read: {exc}"))
            continue
        head, _, body = text.partition("\n")
        if not head.lower().startswith("subject:"):
            issues.append(Issue(where, 1, 1, "", "the first line must be 'Subject: ...'"))
            continue
        subject_text = head[len("subject:") :].strip()
        if body.startswith("\n"):
            body, body_line = body[1:], 3
        else:
            body_line = 2
        label = f"templates.{name}.{lang}"
        subject, problems = parse_template_text(subject_text)
        for offset, message in problems:
            issues.append(
                Issue(
                    where,
                    1,
                    len(head) - len(subject_text) + offset + 1,
                    f"{label}.subject",
                    message,
                )
            )
        body_parsed, problems = parse_template_text(body)
        for offset, message in problems:
            line, column = _line_col(body, offset, body_line)
            issues.append(Issue(where, line, column, f"{label}.body", message))
        if subject is not None and body_parsed is not None:
            variants[lang] = (subject, body_parsed)
    return found, issues, files
