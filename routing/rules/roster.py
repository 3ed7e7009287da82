"""The agents a rules file names, checked against the store's agent accounts.

``omnidesk rules check`` reports a queue's ``agents:`` entry, or a rule's ``then: {assign: …}``,
that the store does not know or has deactivated. These are warnings, never errors: the rules file
lives in git and the accounts in the store, so either may change first, and a running service
keeps routing meanwhile (assignment still gives an unknown agent tickets and skips an inactive
one; see ``routing/assignment.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path as FsPath

from config.yamlpos import parse_yaml
from routing.rules.engine import RuleSet
from routing.rules.errors import Issue, Path, format_path
from routing.rules.schema import ASSIGN_STRATEGIES

__all__ = ["agent_warnings"]


def agent_warnings(ruleset: RuleSet, roster: Mapping[str, bool], path: FsPath | None = None) -> list[Issue]:
    """One issue per agent named in ``ruleset`` that ``roster`` (lower-cased email → active)
    does not hold as active, at its line and column when ``path`` (the file) can be read."""
    found = [(where, email, roster.get(email.lower())) for where, email in _named_agents(ruleset)]
    found = [item for item in found if item[2] is not True]
    if not found:
        return []
    # Positions only when there is something to report: a second parse of a large file is not
    # worth it for the common case of a clean roster.
    doc = None
    if path is not None:
        try:
            doc = parse_yaml(path.read_text(encoding="utf-8"), ruleset.source)
        except (OSError, UnicodeDecodeError):
            doc = None
    out = []
    for where, email, active in found:
        if active is None:
            message = (f"{email} is not an agent in the store; it is still assigned tickets. Add it "
                       f"(`omnidesk agents add NAME {email} --role agent`) or fix the address")
        else:
            message = (f"{email} is an inactive agent; assignment skips it. Reactivate it "
                       f"(`omnidesk agents activate {email}`) or take it out of the file")
        if doc is not None and doc.root is not None:
            out.append(doc.issue(where, message))
        else:
            out.append(Issue(ruleset.source, 1, 1, format_path(where), message))
    return out


def _named_agents(ruleset: RuleSet) -> Iterator[tuple[Path, str]]:
    # A loaded ruleset keeps the file's order of queues and rules, so the indexes are the file's.
    for i, queue in enumerate(ruleset.queues.values()):
        for j, email in enumerate(queue.agents):
            yield ("queues", i, "agents", j), email
    for rule in ruleset.rules:
        assign = rule.actions.assign
        if assign and assign not in ASSIGN_STRATEGIES:
            yield ("rules", rule.position, "then", "assign"), assign

