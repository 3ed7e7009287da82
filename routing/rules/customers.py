"""The customer directory: facts about known senders (tier, account manager, region, ...).

Given inline in the rules file or as a CSV file beside it; each entry names one sender by
``email``, ``phone`` or ``domain`` (a domain entry covers everyone there and in its subdomains).
An address gets the facts of its domain first, then its own entry's on top.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.rules.errors import Issue, Path
from config.yamlpos import YamlDocument

__all__ = ["IDENTITY_KEYS", "Directory", "parse_csv", "parse_inline"]

IDENTITY_KEYS = ("email", "phone", "domain")
_FACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _phone_key(value: str) -> str:
    # "+49 151 1234-5678" and "+4915112345678" are the same number.
    return re.sub(r"[\s().-]", "", value)


@dataclass
class Directory:
    by_email: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_phone: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_domain: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: set[str] = field(default_factory=set)  # every fact name some entry gives

    def __len__(self) -> int:
        return len(self.by_email) + len(self.by_phone) + len(self.by_domain)

    def lookup(self, address: str) -> dict[str, Any]:
        address = address.strip()
        out: dict[str, Any] = {}
        if "@" in address:
            lowered = address.casefold()
            domain = lowered.rpartition("@")[2]
            parts = domain.split(".")
            # Broadest domain first so that a subdomain's own entry wins over its parent's.
            for i in range(len(parts) - 1, -1, -1):
                out.update(self.by_domain.get(".".join(parts[i:]), {}))
            out.update(self.by_email.get(lowered, {}))
        else:
            out.update(self.by_phone.get(_phone_key(address), {}))
        return out

    def add(self, kind: str, key: str, facts: dict[str, Any]) -> str | None:
        """Add one entry; returns a problem message when it duplicates an earlier one."""
        table = {"email": self.by_email, "phone": self.by_phone, "domain": self.by_domain}[kind]
        key = _phone_key(key) if kind == "phone" else key.strip().casefold().lstrip("@")
        if key in table:
            return f"{kind} {key!r} is listed twice"
        table[key] = facts
        self.facts.update(facts)
        return None


def _identity(entry: Mapping[str, Any]) -> list[str]:
    return [k for k in IDENTITY_KEYS if entry.get(k) not in (None, "")]


def parse_inline(items: list[Any], doc: YamlDocument, base: Path) -> tuple[Directory, list[Issue]]:
    directory = Directory()
    issues: list[Issue] = []
    for i, entry in enumerate(items):
        path = (*base, i)
        if not isinstance(entry, dict):
            issues.append(
                doc.issue(
                    path, "each customer is a mapping, e.g. {email: ceo@bigco.com, tier: vip}"
                )
            )
            continue
        ids = _identity(entry)
        if len(ids) != 1:
            issues.append(
                doc.issue(
                    path,
                    "give exactly one of email, phone or domain"
                    + (f" (got {', '.join(ids)})" if ids else ""),
                )
            )
            continue
        kind = ids[0]
        if not isinstance(entry[kind], str):
            issues.append(doc.issue((*path, kind), f"{kind} must be text (quote phone numbers)"))
            continue
        facts: dict[str, Any] = {}
        bad = False
        for name, value in entry.items():
            if name in IDENTITY_KEYS:
                continue
            if not _FACT_NAME.match(name):
                issues.append(
                    doc.issue(
                        (*path, name),
                        "fact names are lower-case words like tier or region",
                        key=True,
                    )
                )
                bad = True
            elif not _plain_fact(value):
                issues.append(
                    doc.issue(
                        (*path, name), "a fact is a text, number, true/false or a list of those"
                    )
                )
                bad = True
            else:
                facts[name] = value
        if bad:
            continue
        problem = directory.add(kind, entry[kind], facts)
        if problem:
            issues.append(doc.issue((*path, kind), problem))
    return directory, issues


def _plain_fact(value: Any) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, (str, int, float, bool)) for v in value)
    return isinstance(value, (str, int, float, bool)) or value is None


def parse_csv(text: str, shown: str) -> tuple[Directory, list[Issue]]:
    """A CSV with a header row; one of its columns is email, phone or domain."""
    directory = Directory()
    issues: list[Issue] = []
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return directory, [
            Issue(shown, 1, 1, "customers", "the CSV file is empty; it needs a header row")
        ]
    names = [h.strip() for h in header]
    if not set(names) & set(IDENTITY_KEYS):
        return directory, [
            Issue(shown, 1, 1, "customers", "the header needs an email, phone or domain column")
        ]
    for col, name in enumerate(names):
        if name not in IDENTITY_KEYS and not _FACT_NAME.match(name):
            issues.append(
                Issue(
                    shown,
                    1,
                    col + 1,
                    "customers",
                    f"column {name!r}: fact names are lower-case words",
                )
            )
    if issues:
        return directory, issues
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            issues.append(
                Issue(
                    shown,
                    line,
                    1,
                    "customers",
                    f"{len(row)} columns where the header has {len(names)}",
                )
            )
            continue
        entry = {name: cell.strip() for name, cell in zip(names, row)}
        ids = _identity(entry)
        if len(ids) != 1:
            issues.append(
                Issue(shown, line, 1, "customers", "fill exactly one of email, phone or domain")
            )
            continue
        facts = {k: v for k, v in entry.items() if k not in IDENTITY_KEYS and v != ""}
        problem = directory.add(ids[0], entry[ids[0]], facts)
        if problem:
            issues.append(Issue(shown, line, 1, "customers", problem))
    # Columns are facts even when every cell is empty: rules may test them.
    directory.facts.update(n for n in names if n not in IDENTITY_KEYS)
    return directory, issues
