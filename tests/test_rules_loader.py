"""The rules loader: strict validation, every error at once, each at its line and column."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from bench.rules_bench import generate_rules_yaml
from routing.rules import RulesError, check_rules_file, load_rules, load_rules_text

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
REPO = Path(__file__).parent.parent
ERROR_SHAPE = re.compile(r"^[^:]+:\d+:\d+: ([\w.\[\]-]+: )?.+$")

HEAD = """\
version: 1
defaults: {queue: general}
queues:
  - {id: general, name: General}
  - {id: billing, name: Billing}
"""


def errors_of(text: str, filename: str = "r.yaml", base_dir: Path | None = None) -> list[str]:
    with pytest.raises(RulesError) as caught:
        load_rules_text(textwrap.dedent(text), filename, base_dir=base_dir)
    for error in caught.value.errors:
        assert ERROR_SHAPE.match(error), error
    return caught.value.errors


def rules_errors(rules: str) -> list[str]:
    return errors_of(HEAD + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))


def one_error(rules: str) -> str:
    errors = rules_errors(rules)
    assert len(errors) == 1, errors
    return errors[0]


# ------------------------------------------------------------------------------------------
# Files that must validate
# ------------------------------------------------------------------------------------------


def test_default_file_validates_and_summarises() -> None:
    code, text = check_rules_file(REPO / "config" / "routing.yaml")
    assert code == 0, text
    assert text.endswith("— OK")
    assert re.search(r"\d+ rules, \d+ queues, 2 templates", text)


def test_example_from_the_issue_validates() -> None:
    ruleset = load_rules(FIXTURES / "brief.yaml")
    assert ruleset.summary() == f"{FIXTURES / 'brief.yaml'}: 4 rules, 3 queues, 1 template — OK"
    assert ruleset.queues["billing"].agents == ("ana@example.com", "bo@example.com")
    assert ruleset.queues["billing"].assign == "round_robin"
    assert ruleset.queues["logistics"].assign == "least_loaded"
    assert ruleset.queues["general"].name == "General"
    assert ruleset.defaults.queue == "general" and ruleset.defaults.priority == "normal"
    assert len(ruleset.digest) == 64


def test_ten_thousand_generated_rules_validate() -> None:
    ruleset = load_rules_text(generate_rules_yaml(10_000), "generated.yaml")
    assert len(ruleset.rules) == 10_000
    index = ruleset.index_for("new_ticket")
    assert index is not None and index.indexed >= 9_990


def test_check_rules_file_lists_every_error_and_exits_1() -> None:
    code, text = check_rules_file(FIXTURES / "typos.yaml")
    assert code == 1
    lines = text.splitlines()
    assert lines[-1] == f"{FIXTURES / 'typos.yaml'}: {len(lines) - 1} errors"
    assert len(lines) - 1 >= 25


def test_check_rules_file_missing_file() -> None:
    code, text = check_rules_file(FIXTURES / "nope.yaml")
    assert code == 1 and "no such file" in text


# ------------------------------------------------------------------------------------------
# A typo'd file: every error, in file order, at its line and column
# ------------------------------------------------------------------------------------------


def test_typos_file_reports_each_error_with_position() -> None:
    with pytest.raises(RulesError) as caught:
        load_rules(FIXTURES / "typos.yaml")
    errors = [e.removeprefix(f"{FIXTURES / 'typos.yaml'}:") for e in caught.value.errors]
    expected = [
        "2:19: defaults.queue: unknown queue 'genral' (did you mean 'general'?)",
        "2:37: defaults.priority: must be one of: low, normal, high, urgent (did you mean 'high'?)",
        "4:22: calendars.office.timezone: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)",
        "4:48: calendars.office.days[1]: must be one of: mon, tue",
        "4:62: calendars.office.hours: '9-17' is not a time range like 09:00-17:00",
        "7:19: queues[1].nmae: unknown key 'nmae' (did you mean 'name'?)",
        "7:60: queues[1].agents[1]: must be an email address",
        "8:10: queues[2].id: queue 'billing' is declared twice",
        "11:54: templates.ack.en.body: unknown placeholder {custmer_name} (did you mean 'customer_name'?)",
        "12:44: templates.ack.de.body: expected '}' before end of string",
        "15:12: rules[0].when.customer.teir: unknown customer fact 'teir' (did you mean 'tier'?)",
        "16:12: rules[0].then.priorty: unknown key 'priorty' (did you mean 'priority'?)",
        "17:15: rules[0].continue: must be true or false, not 'yes'",
        "20:24: rules[1].when.channel[1]: unknown channel 'whatsap' (did you mean 'whatsapp'?)",
        "22:21: rules[1].when.any[0].subject.contains_al: unknown operator 'contains_al' (did you mean 'contains_any'?)",
        "23:27: rules[1].when.any[1].text.matches: bad regular expression: missing )",
        "24:19: rules[1].then.queue: unknown queue 'logistic'",
        "24:62: rules[1].then.tags: must be a list",
        "25:11: rules[2].name: duplicate rule name 'VIP customers' (first used on line 14)",
        "27:27: rules[2].when.ticket.status: unknown status 'resolvd' (did you mean 'resolved'?)",
        "27:63: rules[2].when.business_hours.calendar: unknown calendar 'ofice' (did you mean 'office'?)",
        "28:38: rules[2].then.auto_reply: unknown template 'acknowledge'",
        "28:56: rules[2].then.sla: unknown SLA policy 'gold'",
        "28:70: rules[2].then.assign: must be an agent's address, round_robin or least_loaded (did you mean 'round_robin'?)",
        "30:12: rules[3].when.ticket.status: ticket.status is only known in follow_up, sla_breach and status_changed rules",
        "30:33: rules[3].when.sender: unknown condition 'sender' (did you mean 'from'?)",
        "31:12: rules[3].then.status: status can only be set by follow_up and sla_breach rules",
    ]
    assert len(errors) == len(expected), "\n".join(errors)
    for got, want in zip(errors, expected):
        assert got.startswith(want), f"{got!r} does not start with {want!r}"


# ------------------------------------------------------------------------------------------
# Each kind of error
# ------------------------------------------------------------------------------------------


def test_yaml_syntax_error_has_a_position() -> None:
    errors = errors_of("version: 1\nqueues: [a, b\ndefaults: {}\n")
    assert len(errors) == 1
    assert errors[0].startswith("r.yaml:3:") and "YAML syntax" in errors[0]


def test_duplicate_yaml_key() -> None:
    errors = rules_errors(
        """\
        - name: a
          when: {subject: x}
          when: {subject: y}
          then: {}
        """
    )
    assert errors == ["r.yaml:9:5: rules[0].when: duplicate key 'when' (first given on line 8)"]


def test_empty_and_non_mapping_files() -> None:
    assert errors_of("") == [
        "r.yaml:1:1: the file is empty: it needs version, defaults, queues and rules"
    ]
    assert "must be a mapping" in errors_of("- a\n- b\n")[0]


def test_top_level_unknown_missing_and_version() -> None:
    errors = errors_of("version: 2\nqueus: []\nrules: []\n")
    assert any(e.startswith("r.yaml:1:10: version: must be 1") for e in errors)
    assert any("2:1: queus: unknown key 'queus' (did you mean 'queues'?)" in e for e in errors)
    assert any(e.endswith("missing required key 'defaults'") for e in errors)
    assert any(e.endswith("missing required key 'queues'") for e in errors)


def test_unknown_key_in_rule_and_missing_then() -> None:
    errors = rules_errors(
        """\
        - name: a
          whne: {subject: x}
        """
    )
    assert errors[0] == "r.yaml:7:5: rules[0]: missing required key 'then'"
    assert "r.yaml:8:5: rules[0].whne: unknown key 'whne' (did you mean 'when'?)" in errors[1]


def test_wrong_types() -> None:
    errors = rules_errors(
        """\
        - name: 5
          then: {priority: 1, spam: "no", notify: ops@example.com, category: ""}
        """
    )
    text = "\n".join(errors)
    assert "rules[0].name: must be text, not 5" in text
    assert "rules[0].then.priority: must be one of: low, normal, high, urgent" in text
    assert "rules[0].then.spam: must be true or false, not 'no'" in text
    assert "rules[0].then.notify: must be a list" in text
    assert "rules[0].then.category: must not be empty" in text


def test_unknown_condition_with_and_without_suggestion() -> None:
    assert "unknown condition 'subjet' (did you mean 'subject'?)" in one_error(
        "- {name: a, when: {subjet: x}, then: {}}"
    )
    assert "unknown condition 'custmer.tier' (did you mean 'customer.tier'?)" in one_error(
        "- {name: a, when: {custmer.tier: x}, then: {}}"
    )
    assert "unknown condition 'zzz'" in one_error("- {name: a, when: {zzz: x}, then: {}}")


def test_operator_errors() -> None:
    assert "unknown operator 'startwith' (did you mean 'startswith'?)" in one_error(
        "- {name: a, when: {subject: {startwith: x}}, then: {}}"
    )
    assert "in takes a non-empty list" in one_error(
        "- {name: a, when: {subject: {in: x}}, then: {}}"
    )
    assert "contains_any takes a non-empty list of words" in one_error(
        "- {name: a, when: {text: {contains_any: []}}, then: {}}"
    )
    assert "contains takes a non-empty text" in one_error(
        "- {name: a, when: {text: {contains: 3}}, then: {}}"
    )
    assert "must be a single value" in one_error(
        "- {name: a, when: {subject: {equals: [a]}}, then: {}}"
    )
    assert "gt compares numbers" in one_error("- {name: a, when: {subject: {gt: 3}}, then: {}}")
    assert "gte takes a number" in one_error(
        "- {name: a, when: {customer.open_tickets: {gte: x}}, then: {}}"
    )
    assert "channel is compared with a name" in one_error(
        "- {name: a, when: {channel: {contains: mail}}, then: {}}"
    )
    assert "give at least one operator" in one_error("- {name: a, when: {subject: {}}, then: {}}")


def test_bad_regex_position() -> None:
    error = one_error("- {name: a, when: {text: {matches: '(unclosed'}}, then: {}}")
    assert error.startswith("r.yaml:7:38: rules[0].when.text.matches: bad regular expression")


def test_combinator_errors() -> None:
    assert "any takes a non-empty list" in one_error("- {name: a, when: {any: []}, then: {}}")
    assert "must be a mapping of conditions" in one_error("- {name: a, when: {all: [x]}, then: {}}")
    assert "must be a mapping of conditions" in one_error("- {name: a, when: {not: [x]}, then: {}}")


def test_value_checks() -> None:
    assert "'english' is not a language code" in one_error(
        "- {name: a, when: {language: english}, then: {}}"
    )
    assert "has_attachment: must be true or false" in one_error(
        "- {name: a, when: {has_attachment: yes}, then: {}}"
    )
    assert "'X Prio' is not a header name" in one_error(
        "- {name: a, when: {header.X Prio: x}, then: {}}"
    )
    assert "unknown priority 'hi'" in one_error(
        "- {name: a, on: follow_up, when: {ticket.priority: hi}, then: {}}"
    )
    assert "unknown queue 'bill' (did you mean 'billing'?)" in one_error(
        "- {name: a, on: follow_up, when: {ticket.queue: bill}, then: {}}"
    )
    assert "unknown ticket field 'stats' (did you mean 'status'?)" in one_error(
        "- {name: a, on: follow_up, when: {ticket.stats: open}, then: {}}"
    )
    assert "must be one of: new_ticket, follow_up, sla_breach" in one_error(
        "- {name: a, on: followup, when: {}, then: {}}"
    )


def test_business_hours_needs_a_calendar() -> None:
    error = one_error("- {name: a, when: {business_hours: true}, then: {}}")
    assert "no calendar to check" in error
    errors = rules_errors("- {name: a, when: {business_hours: {calendar: x, iss: true}}, then: {}}")
    assert "unknown calendar 'x'; no calendars are declared" in errors[0]
    assert (
        "r.yaml:7:52: rules[0].when.business_hours.iss: unknown key 'iss' (did you mean 'is'?)"
        in errors[1]
    )


def test_duplicate_rule_names_are_case_insensitive() -> None:
    error = one_error(
        """\
        - {name: Refunds, then: {}}
        - {name: refunds, then: {}}
        """
    )
    assert (
        error == "r.yaml:8:12: rules[1].name: duplicate rule name 'refunds' (first used on line 7)"
    )


def test_unknown_references_name_what_is_declared() -> None:
    errors = rules_errors("- {name: a, then: {queue: billin, auto_reply: ack, sla: gold}}")
    assert (
        "unknown queue 'billin' (did you mean 'billing'?); declared: billing, general" in errors[0]
    )
    assert "unknown template 'ack'; declare it under templates:" in errors[1]
    assert "unknown SLA policy 'gold'; declare it under sla_policies:" in errors[2]


def test_assign_accepts_agents_and_strategies() -> None:
    load_rules_text(
        HEAD
        + "rules:\n"
        + "  - {name: a, then: {assign: ana@example.com}}\n"
        + "  - {name: b, then: {assign: least_loaded}}\n"
    )
    assert "must be an agent's address" in one_error("- {name: a, then: {assign: ana}}")


def test_queue_errors() -> None:
    errors = errors_of(
        """\
        version: 1
        defaults: {queue: general}
        queues:
          - {id: General}
          - {name: x}
          - {id: general, assign: roundrobin}
        """
    )
    text = "\n".join(errors)
    assert "queues[0].id: must be a lower-case name" in text
    assert "r.yaml:5:5: queues[1]: missing required key 'id'" in text
    assert (
        "queues[2].assign: must be one of: round_robin, least_loaded (did you mean 'round_robin'?)"
        in text
    )


def test_calendar_errors() -> None:
    errors = errors_of(
        HEAD
        + textwrap.dedent(
            """\
            calendars:
              Office: {timezone: UTC}
              late: {timezone: UTC, hours: "18:00-09:00", holidays: [2026-13-01, "2026-12-24"]}
            """
        )
    )
    text = "\n".join(errors)
    assert "calendars.Office: 'Office' is not a lower-case name" in text
    assert "ends before it starts" in text
    # 2026-13-01 is no date, so YAML reads it as text
    assert "calendars.late.holidays[0]: must be a date like 2026-12-25" in text


def test_templates_inline_errors() -> None:
    errors = errors_of(
        HEAD
        + textwrap.dedent(
            """\
            templates:
              ack:
                de: {subject: "Hallo", body: "Ticket {ticket_ref:>10} {}"}
              hello:
                de: {subject: "Hallo", body: "Hallo {customer_name}"}
              bad: x
            """
        )
    )
    text = "\n".join(errors)
    assert "placeholder {ticket_ref:>10} takes no format" in text
    assert "empty placeholder {}" in text
    assert "templates.hello: template 'hello' has no 'en' variant (defaults.language)" in text
    assert "templates.bad: must map languages to {subject, body}" in text


def test_templates_folder_errors_point_into_the_files(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(HEAD + "templates: tpl\n")
    (tmp_path / "tpl").mkdir()
    for name in ("ack.en.txt", "ack.de.txt", "README"):
        (tmp_path / "tpl" / name).write_text((FIXTURES / "bad_templates" / name).read_text())
    (tmp_path / "tpl" / "ack.txt").write_text("Subject: x\n\ny\n")
    with pytest.raises(RulesError) as caught:
        load_rules(tmp_path / "r.yaml")
    assert sorted(caught.value.errors) == [
        "tpl/ack.de.txt:1:1: the first line must be 'Subject: ...'",
        (
            "tpl/ack.en.txt:5:16: templates.ack.en.body: unknown placeholder {tikcet_ref} (did you"
            " mean 'ticket_ref'?); known: {ticket_ref}, {customer_name}, {queue}, {queue_name},"
            " {due}, {subject}"
        ),
        "tpl/ack.txt:1:1: template files are named NAME.LANG.txt, e.g. ack.en.txt",
    ]


def test_missing_template_folder_and_customers_file(tmp_path: Path) -> None:
    errors = errors_of(HEAD + "templates: nowhere\ncustomers: nobody.csv\n", base_dir=tmp_path)
    assert "no template folder 'nowhere'" in errors[0]
    assert "no customers file 'nobody.csv'" in errors[1]


def test_customers_inline_errors() -> None:
    errors = errors_of(
        HEAD
        + textwrap.dedent(
            """\
            customers:
              - {email: a@x.com, tier: vip}
              - {email: A@X.com, tier: gold}
              - {tier: gold}
              - {email: b@x.com, phone: "+1", tier: gold}
              - {domain: x.com, Tier: gold, nested: {a: 1}}
              - just text
            """
        )
    )
    text = "\n".join(errors)
    assert "customers[1].email: email 'a@x.com' is listed twice" in text
    assert "customers[2]: give exactly one of email, phone or domain" in text
    assert "(got email, phone)" in text
    assert "customers[4].Tier: fact names are lower-case words" in text
    assert "customers[4].nested: a fact is a text, number" in text
    assert "customers[5]: each customer is a mapping" in text


def test_customers_csv_errors_name_csv_lines(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text((FIXTURES / "bad_customers.csv").read_text())
    errors = errors_of(HEAD + "customers: c.csv\n", base_dir=tmp_path)
    assert errors == [
        "c.csv:3:1: customers: email 'ana@example.com' is listed twice",
        "c.csv:4:1: customers: fill exactly one of email, phone or domain",
        "c.csv:5:1: customers: 3 columns where the header has 2",
    ]


def test_customer_facts_from_csv_become_known_conditions() -> None:
    ruleset = load_rules(FIXTURES / "with_files.yaml")
    assert ruleset.customer_facts("CEO@BigCo.com") == {
        "tier": "platinum",
        "region": "emea",
        "name": "Dana CEO",
    }
    assert ruleset.customer_facts("someone@us.bigco.com") == {"tier": "silver", "region": "amer"}
    assert ruleset.customer_facts("someone@bigco.com") == {"tier": "gold", "region": "emea"}
    assert ruleset.customer_facts("+4915112345678")["name"] == "Phone Person"
    assert ruleset.customer_facts("nobody@else.com") == {}
    assert FIXTURES / "customers.csv" in ruleset.watched
    assert FIXTURES / "templates" / "ack.de.txt" in ruleset.watched


def test_all_errors_come_in_file_order_across_sections() -> None:
    errors = errors_of(
        """\
        version: 1
        defaults: {queue: nope}
        queues: [{id: general, colour: red}]
        rules:
          - {name: a, when: {subject: {contans: x}}, then: {queue: nope2}}
        """
    )
    positions = [tuple(int(n) for n in e.split(":")[1:3]) for e in errors]
    assert positions == sorted(positions) and len(errors) == 4


def test_merge_keys_and_anchors_are_understood() -> None:
    ruleset = load_rules_text(
        HEAD
        + textwrap.dedent(
            """\
            rules:
              - name: a
                when: &refund {text: {contains: refund}}
                then: &billing {queue: billing}
              - name: b
                when: {<<: *refund, channel: sms}
                then: *billing
            """
        )
    )
    assert [r.name for r in ruleset.rules] == ["a", "b"]


def test_rules_error_message_lists_all() -> None:
    with pytest.raises(RulesError) as caught:
        load_rules_text(
            HEAD + "rules: [{name: a, then: {queue: x}}, {name: b, then: {queue: y}}]\n"
        )
    assert str(caught.value).startswith("2 errors in the rules:\n")
    assert len(caught.value.issues) == 2 and caught.value.issues[0].line == 6


def test_empty_sections() -> None:
    errors = errors_of("version: 1\ndefaults:\nqueues:\nrules:\n")
    assert "defaults: must be a mapping (key: value lines), not nothing (empty)" in errors[0]
    assert "queues: must be a non-empty list of queues" in errors[1]
    text = "version: 1\ndefaults: {queue: g}\nqueues: [{id: g}]\nrules:\ncalendars:\ntemplates:\ncustomers:\n"
    assert load_rules_text(text).summary() == "<rules>: 0 rules, 1 queue, 0 templates — OK"
