"""Routing rules: a YAML file admins keep in git, validated strictly and compiled for speed.

``load_rules(path)`` gives a ``RuleSet`` (or raises ``RulesError`` with every problem as
``FILE:LINE:COL: path: message``); ``RuleSet.evaluate`` decides a message's queue, priority and the
rest; ``RuleSet.explain`` says why; ``RulesHolder`` keeps the last good rules while the file changes;
``replay`` compares two rule sets on past messages.
The file format is documented key by key in ``config/routing.README.md``.
"""

from routing.rules.conditions import Failure
from routing.rules.engine import CompiledRule, Evaluation, Queue, RuleSet
from routing.rules.errors import Issue, RulesError
from routing.rules.explain import Explanation, RuleReport
from routing.rules.loader import check_rules_file, load_rules, load_rules_text
from routing.rules.reload import RulesHolder
from routing.rules.replay import ReplayReport, replay

__all__ = [
    "CompiledRule",
    "Evaluation",
    "Explanation",
    "Failure",
    "Issue",
    "Queue",
    "ReplayReport",
    "RuleReport",
    "RuleSet",
    "RulesError",
    "RulesHolder",
    "check_rules_file",
    "load_rules",
    "load_rules_text",
    "replay",
]
