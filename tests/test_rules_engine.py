"""The compiled rules engine: every operator, combinator, action and event, and explanations."""

from __future__ import annotations

import datetime as dt
import json
import random
import textwrap
from typing import Any

import pytest

from intake.envelope import AttachmentRef, Channel, Envelope, Party, PartyKind
from routing.decision import Actions
from routing.facts import Facts
from routing.language import detect_language
from routing.rules import RuleSet, load_rules_text, replay
from routing.rules.message import KeywordMatcher

UTC = dt.UTC
# Wednesday 2026-03-04, 11:00 in Berlin (10:00 UTC): inside office hours.
OPEN = dt.datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
EVENING = dt.datetime(2026, 3, 4, 17, 30, tzinfo=UTC)  # 18:30 in Berlin
SATURDAY = dt.datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
CHRISTMAS = dt.datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # a Friday, and a holiday

HEAD = """\
version: 1
defaults: {queue: general, priority: normal, calendar: office}
calendars:
  office: {timezone: Europe/Berlin, hours: "09:00-12:00, 13:00-17:00", holidays: [2026-12-25]}
  tokyo: {timezone: Asia/Tokyo, days: [mon, tue, wed, thu, fri, sat], hours: "09:00-18:00"}
queues:
  - {id: general, name: General}
  - {id: billing, name: Billing, agents: [ana@example.com, bo@example.com], assign: round_robin}
  - {id: logistics, name: Logistics}
  - {id: spam}
customers:
  - {email: ceo@bigco.com, tier: VIP, name: Dana}
  - {domain: bigco.com, tier: enterprise, region: emea}
sla_policies:
  gold: {first_response: 1h}
templates:
  ack:
    en: {subject: "We got it [{ticket_ref}]", body: "Hello {customer_name}, {queue_name} has {ticket_ref}. Due {due}."}
    de: {subject: "Erhalten [{ticket_ref}]", body: "Hallo {customer_name}"}
    pt: {subject: "Recebido [{ticket_ref}]", body: "Olá {customer_name}"}
"""


def build(rules: str) -> RuleSet:
    return load_rules_text(
        HEAD + "rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "), "t.yaml"
    )


def envelope(**kw: Any) -> Envelope:
    data: dict[str, Any] = {
        "channel": Channel.EMAIL,
        "external_id": "m1",
        "received_at": OPEN,
        "sender": Party(address="Ana@Example.com", name="Ana"),
        "recipients": (Party(address="support@omnidesk.example"),),
        "subject": "Hello",
        "text": "Just a question.",
    }
    data.update(kw)
    return Envelope(**data)


def facts(**kw: Any) -> Facts:
    kw.setdefault("now", OPEN)
    return Facts(**kw)


def matches(
    when: str, env: Envelope | None = None, fx: Facts | None = None, *, on: str = "new_ticket"
) -> bool:
    """Does a one-rule set with this condition match? Explain must agree with evaluate."""
    rs = build(f"- {{name: r, on: {on}, when: {when}, then: {{tags: [hit]}}}}\n")
    env = env or envelope()
    fx = fx or facts(event=on)
    evaluation = rs.evaluate(env, fx)
    hit = [a.name for a in evaluation.applied] == ["r"]
    assert rs.explain(env, fx).rules[0].matched is hit
    return hit


def applied(rs: RuleSet, env: Envelope | None = None, fx: Facts | None = None) -> list[str]:
    return [a.name for a in rs.evaluate(env or envelope(), fx or facts()).applied]


# ------------------------------------------------------------------------------------------
# Fields and operators
# ------------------------------------------------------------------------------------------


def test_channel() -> None:
    assert matches("{channel: email}")
    assert matches("{channel: [sms, email]}")
    assert not matches("{channel: [sms, whatsapp]}")
    assert matches("{channel: {in: [email]}}")


@pytest.mark.parametrize(
    ("value", "hit"),
    [
        ("ana@example.com", True),  # address, case-insensitive
        ("example.com", True),  # domain
        ("com", True),  # a parent domain is a domain too
        ("ample.com", False),  # not a suffix of a label
        ("bo@example.com", False),
        ("{glob: '*@example.com'}", True),
        ("{glob: '*@*.org'}", False),
        ("{startswith: ana@}", True),
        ("{contains: '@exam'}", True),
        ("{matches: '^Ana@'}", True),  # regexes see the original case
        ("{matches: '^ana@'}", False),
        ("{matches: '(?i)^ana@'}", True),
        ("[x.org, example.com]", True),
    ],
)
def test_from(value: str, hit: bool) -> None:
    assert matches(f"{{from: {value}}}") is hit


def test_from_subdomain_and_phone() -> None:
    assert matches("{from: bigco.com}", envelope(sender=Party(address="x@mail.bigco.com")))
    assert not matches("{from: bigco.com}", envelope(sender=Party(address="x@notbigco.com")))
    phone = envelope(
        channel=Channel.SMS, sender=Party(address="+4915112345678", kind=PartyKind.PHONE)
    )
    assert matches("{from: '+4915112345678'}", phone)
    assert matches("{from: {startswith: '+49'}}", phone)
    assert not matches("{from: {startswith: '+43'}}", phone)


def test_to_matches_any_recipient() -> None:
    two = envelope(
        recipients=(
            Party(address="support@omnidesk.example"),
            Party(address="Billing@Omnidesk.example"),
        )
    )
    assert matches("{to: billing@omnidesk.example}", two)
    assert matches("{to: omnidesk.example}", two)
    assert not matches("{to: sales@omnidesk.example}", two)
    assert matches("{to: {glob: 'bill*'}}", two)
    assert not matches("{to: x@y.z}", envelope(recipients=()))


@pytest.mark.parametrize(
    ("when", "hit"),
    [
        ("{subject: 'my PARCEL arrived'}", True),
        ("{subject: [a, 'My parcel arrived']}", True),
        ("{subject: {equals: 'my parcel'}}", False),
        ("{subject: {contains: PARCEL}}", True),
        ("{subject: {contains: parcels}}", False),
        ("{subject: {contains_any: [box, parcel]}}", True),
        ("{subject: {contains_any: [box, crate]}}", False),
        ("{subject: {startswith: ['re:', my]}}", True),
        ("{subject: {startswith: parcel}}", False),
        ("{subject: {glob: '*arrived'}}", True),
        ("{subject: {glob: 'parcel*'}}", False),
        ("{subject: {matches: 'parcel \\w+'}}", True),
        ("{subject: {matches: 'PARCEL'}}", False),
    ],
)
def test_subject(when: str, hit: bool) -> None:
    assert matches(when, envelope(subject="My parcel arrived")) is hit


def test_text_keywords_are_substrings_case_folded() -> None:
    env = envelope(text="I want a REFUND for the Straße order")
    assert matches("{text: {contains_any: [chargeback, refund]}}", env)
    assert matches("{text: {contains: refun}}", env)  # substring semantics
    assert matches("{text: {contains: strasse}}", env)  # case folding: ß is ss
    assert not matches("{text: {contains_any: [chargeback, invoice]}}", env)


def test_text_falls_back_to_full_text() -> None:
    env = envelope(text="", full_text="> quoted\nrefund please")
    assert matches("{text: {contains: refund}}", env)


def test_language_from_facts_then_envelope() -> None:
    assert matches("{language: de}", fx=facts(language="de"))
    assert matches("{language: [fr, de]}", envelope(language="de"))
    assert not matches("{language: de}", envelope(language="de"), facts(language="en"))
    assert not matches("{language: de}")


def test_has_attachment_ignores_inline_images() -> None:
    logo = AttachmentRef(sha256="a" * 64, size=10, filename="logo.png", inline=True)
    pdf = AttachmentRef(sha256="b" * 64, size=10, filename="invoice.pdf")
    assert not matches("{has_attachment: true}", envelope(attachments=(logo,)))
    assert matches("{has_attachment: false}", envelope(attachments=(logo,)))
    assert matches("{has_attachment: true}", envelope(attachments=(logo, pdf)))


def test_headers() -> None:
    env = envelope(headers={"x-priority": "1 (Highest)"})
    assert matches("{header.X-Priority: {startswith: '1'}}", env)
    assert not matches("{header.X-Mailer: {contains: outlook}}", env)
    assert matches("{not: {header.X-Mailer: {contains: outlook}}}", env)


def test_customer_facts() -> None:
    fx = facts(
        customer={
            "tier": "VIP",
            "open_tickets": 3,
            "past_tickets": "12",
            "channels": ["email", "sms"],
        }
    )
    assert matches("{customer.tier: vip}", fx=fx)
    assert matches("{customer.tier: [gold, vip]}", fx=fx)
    assert matches("{customer.open_tickets: 3}", fx=fx)
    assert matches("{customer.open_tickets: {gte: 3}}", fx=fx)
    assert not matches("{customer.open_tickets: {gt: 3}}", fx=fx)
    assert matches("{customer.open_tickets: {lt: 3.5}}", fx=fx)
    assert not matches("{customer.open_tickets: {lte: 2}}", fx=fx)
    assert matches("{customer.past_tickets: {gt: 10}}", fx=fx)  # CSV facts are text
    assert matches("{customer.channels: sms}", fx=fx)  # a list matches by any element
    assert not matches("{customer.channels: slack}", fx=fx)
    assert not matches("{customer.region: emea}", fx=fx)  # missing fact
    assert not matches("{customer.region: {gte: 1}}", fx=fx)


def test_ticket_fields_in_follow_up_rules() -> None:
    fx = facts(
        event="follow_up",
        ticket={"status": "resolved", "priority": "low", "queue": "billing", "ref": "OD-7"},
    )
    assert matches("{ticket.status: resolved}", fx=fx, on="follow_up")
    assert matches("{ticket.queue: [billing, general]}", fx=fx, on="follow_up")
    assert matches("{ticket.ref: {startswith: od-}}", fx=fx, on="follow_up")
    assert not matches("{ticket.status: open}", fx=fx, on="follow_up")
    assert not matches("{ticket.status: open}", fx=facts(event="follow_up"), on="follow_up")


@pytest.mark.parametrize(
    ("when", "now", "hit"),
    [
        ("{business_hours: true}", OPEN, True),
        ("{business_hours: true}", dt.datetime(2026, 3, 4, 11, 30, tzinfo=UTC), False),  # lunch
        ("{business_hours: true}", EVENING, False),
        ("{business_hours: false}", EVENING, True),
        ("{business_hours: true}", SATURDAY, False),
        ("{business_hours: true}", CHRISTMAS, False),
        ("{business_hours: {calendar: tokyo}}", SATURDAY - dt.timedelta(hours=8), True),  # 11:00
        ("{business_hours: {calendar: tokyo, is: false}}", SATURDAY - dt.timedelta(hours=8), False),
        ("{business_hours: {calendar: tokyo}}", OPEN, False),  # 19:00 in Tokyo
    ],
)
def test_business_hours(when: str, now: dt.datetime, hit: bool) -> None:
    assert matches(when, fx=facts(now=now)) is hit


def test_naive_now_means_utc() -> None:
    assert Facts(now=dt.datetime(2026, 3, 4, 10, 0)).now.tzinfo is not None
    with pytest.raises(ValueError, match="event must be one of"):
        Facts(event="reply")


# ------------------------------------------------------------------------------------------
# Combinators
# ------------------------------------------------------------------------------------------


def test_mapping_entries_must_all_hold() -> None:
    env = envelope(subject="Refund", text="please")
    assert matches("{subject: refund, text: please}", env)
    assert not matches("{subject: refund, text: thanks}", env)
    assert matches("{subject: {contains: ref, startswith: re, glob: 'r*'}}", env)
    assert not matches("{subject: {contains: ref, startswith: x}}", env)


def test_all_any_not_nested() -> None:
    env = envelope(subject="Broken box", text="it arrived broken", channel=Channel.WHATSAPP)
    assert matches("{all: [{channel: whatsapp}, {subject: {contains: box}}]}", env)
    assert not matches("{all: [{channel: email}, {subject: {contains: box}}]}", env)
    assert matches("{any: [{channel: email}, {subject: {contains: box}}]}", env)
    assert not matches("{any: [{channel: email}, {subject: {contains: crate}}]}", env)
    assert matches("{not: {channel: email}}", env)
    assert not matches("{not: {channel: whatsapp}}", env)
    assert matches(
        "{any: [{not: {text: {contains: broken}}}, {all: [{channel: whatsapp}, {not: {has_attachment: true}}]}]}",
        env,
    )
    assert matches("{}", env)  # no condition: every message


# ------------------------------------------------------------------------------------------
# Actions, events and evaluation order
# ------------------------------------------------------------------------------------------


def test_every_action_reaches_the_decision() -> None:
    rs = build(
        """\
        - name: everything
          then:
            queue: billing
            priority: urgent
            category: refund
            tags: [a, b, a]
            assign: round_robin
            sla: gold
            auto_reply: ack
            notify: [lead@example.com]
            spam: false
        """
    )
    evaluation = rs.evaluate(envelope(), facts())
    assert evaluation.actions == Actions(
        queue="billing",
        priority="urgent",
        category="refund",
        tags=("a", "b"),
        assign="round_robin",
        sla="gold",
        auto_reply="ack",
        notify=("lead@example.com",),
    )
    assert evaluation.applied[0].actions["tags"] == ["a", "b"]
    assert evaluation.applied[0].actions["spam"] is False


def test_defaults_apply_to_new_tickets_only() -> None:
    rs = build("- {name: nothing, when: {subject: never}, then: {}}\n")
    assert rs.evaluate(envelope(), facts()).actions == Actions(queue="general", priority="normal")
    assert rs.evaluate(envelope(), facts(event="follow_up")).actions == Actions()
    assert rs.evaluate(envelope(), facts()).applied == ()


def test_first_match_wins_and_continue_accumulates() -> None:
    rs = build(
        """\
        - {name: vip, when: {customer.tier: vip}, then: {priority: high, tags: [vip], notify: [a@x.io]}, continue: true}
        - {name: spammy, when: {subject: {contains: win}}, then: {spam: true, tags: [spam]}, continue: true}
        - {name: refund, when: {text: {contains: refund}}, then: {queue: billing, tags: [money], notify: [b@x.io]}}
        - {name: also refund, when: {text: {contains: refund}}, then: {queue: logistics}}
        - {name: nospam, when: {}, then: {spam: false, priority: low}}
        """
    )
    fx = facts(customer={"tier": "vip"})
    evaluation = rs.evaluate(envelope(subject="win", text="refund"), fx)
    assert [a.name for a in evaluation.applied] == ["vip", "spammy", "refund"]
    assert evaluation.actions == Actions(
        queue="billing",
        priority="high",
        tags=("vip", "spam", "money"),
        notify=("a@x.io", "b@x.io"),
        spam=True,
    )
    # A catch-all at the end decides when nothing before it stopped evaluation; spam stays sticky.
    later = rs.evaluate(envelope(subject="win", text="hello"), fx)
    assert [a.name for a in later.applied] == ["vip", "spammy", "nospam"]
    assert later.actions.priority == "low" and later.actions.spam is True


def test_disabled_rules_do_nothing() -> None:
    rs = build(
        """\
        - {name: off, enabled: false, then: {queue: spam}}
        - {name: on, then: {queue: billing}}
        """
    )
    assert applied(rs) == ["on"]
    assert rs.explain(envelope(), facts()).rules[0].note == "disabled"


def test_events_select_their_rules() -> None:
    rs = build(
        """\
        - {name: new, then: {queue: billing}}
        - name: reopen
          on: follow_up
          when: {ticket.status: resolved}
          then: {status: escalated, priority: high, auto_reply: false}
        - {name: breach, on: sla_breach, when: {ticket.priority: [high, urgent]}, then: {notify: [lead@x.io]}}
        """
    )
    assert applied(rs) == ["new"]
    follow = rs.evaluate(envelope(), facts(event="follow_up", ticket={"status": "resolved"}))
    assert [a.name for a in follow.applied] == ["reopen"]
    assert follow.actions == Actions(status="escalated", priority="high", auto_reply=False)
    breach = rs.evaluate(envelope(), facts(event="sla_breach", ticket={"priority": "urgent"}))
    assert breach.actions == Actions(notify=("lead@x.io",))


def test_defaults_can_carry_auto_reply_and_sla() -> None:
    rs = load_rules_text(
        HEAD.replace(
            "defaults: {queue: general, priority: normal, calendar: office}",
            "defaults: {queue: general, auto_reply: ack, sla: gold, calendar: office}",
        )
        + "rules:\n  - {name: quiet, when: {channel: sms}, then: {auto_reply: false}}\n"
    )
    assert rs.evaluate(envelope(), facts()).actions == Actions(
        queue="general", priority="normal", auto_reply="ack", sla="gold"
    )
    assert rs.evaluate(envelope(channel=Channel.SMS), facts()).actions.auto_reply is False


# ------------------------------------------------------------------------------------------
# The candidate index never changes an outcome
# ------------------------------------------------------------------------------------------

_WORDS = ["refund", "invoice", "broken", "late", "login", "fund", "voice", "ok"]


def _random_condition(rng: random.Random, depth: int = 0) -> str:
    choice = rng.randrange(14 if depth < 2 else 10)
    word = rng.choice(_WORDS)
    if choice == 0:
        return f"{{channel: [{', '.join(rng.sample(['email', 'sms', 'whatsapp', 'slack'], 2))}]}}"
    if choice == 1:
        return f"{{text: {{contains_any: [{word}, {rng.choice(_WORDS)}]}}}}"
    if choice == 2:
        return f"{{subject: {{contains: {word}}}}}"
    if choice == 3:
        return f"{{from: {rng.choice(['a.com', 'b.org', 'x@a.com', 'sub.a.com'])}}}"
    if choice == 4:
        return f"{{to: [{rng.choice(['s@help.io', 'b@help.io'])}]}}"
    if choice == 5:
        return f"{{customer.tier: {rng.choice(['vip', 'gold'])}}}"
    if choice == 6:
        return f"{{language: {rng.choice(['en', 'de'])}}}"
    if choice == 7:
        return f"{{business_hours: {rng.choice(['true', 'false'])}}}"
    if choice == 8:
        return f"{{subject: {{matches: '(?i){word}'}}}}"
    if choice == 9:
        return f"{{has_attachment: {rng.choice(['true', 'false'])}}}"
    if choice == 10:
        return f"{{not: {_random_condition(rng, depth + 1)}}}"
    inner = ", ".join(_random_condition(rng, depth + 1) for _ in range(rng.randint(1, 3)))
    return f"{{{rng.choice(['all', 'any', 'any'])}: [{inner}]}}"


def _brute_force(rs: RuleSet, env: Envelope, fx: Facts) -> list[str]:
    m = rs.message(env, fx)
    out = []
    for rule in rs.rules:
        if rule.event == fx.event and rule.enabled and rule.cond.test(m):
            out.append(rule.name)
            if not rule.continue_:
                break
    return out


def _random_envelope(rng: random.Random, i: int) -> tuple[Envelope, Facts]:
    env = envelope(
        external_id=f"m{i}",
        channel=rng.choice([Channel.EMAIL, Channel.SMS, Channel.WHATSAPP, Channel.SLACK]),
        sender=Party(address=rng.choice(["x@a.com", "y@sub.a.com", "z@b.org", "w@c.net"])),
        recipients=tuple(
            Party(address=a)
            for a in rng.sample(["s@help.io", "b@help.io", "o@help.io"], rng.randint(0, 2))
        ),
        subject=" ".join(rng.sample(_WORDS, 2)).upper(),
        text=" ".join(rng.sample(_WORDS + ["hello", "there"], 3)),
        attachments=(AttachmentRef(sha256="c" * 64, size=1),) if rng.random() < 0.3 else (),
    )
    fx = facts(
        now=rng.choice([OPEN, EVENING, SATURDAY]),
        language=rng.choice(["en", "de", None]),
        customer={"tier": rng.choice(["vip", "gold", "none"])},
    )
    return env, fx


def test_index_and_brute_force_agree() -> None:
    rng = random.Random(7)
    lines = []
    for i in range(250):
        cont = ", continue: true" if rng.random() < 0.4 else ""
        lines.append(
            f"- {{name: r{i}, when: {_random_condition(rng)}, then: {{tags: [t{i}]}}{cont}}}"
        )
    rs = build("\n".join(lines) + "\n")
    index = rs.index_for("new_ticket")
    assert index is not None and 0 < index.indexed < len(index.rules)
    plain = {name: matcher.without_automaton() for name, matcher in rs._env.matchers.items()}
    seen_lengths = set()
    for i in range(400):
        env, fx = _random_envelope(rng, i)
        expected = _brute_force(rs, env, fx)
        assert applied(rs, env, fx) == expected
        seen_lengths.add(len(expected))
        explanation = rs.explain(env, fx)
        assert [a.name for a in explanation.applied] == expected
        assert explanation.actions == rs.evaluate(env, fx).actions
        saved = rs._env.matchers
        rs._env.matchers = plain
        try:
            assert _brute_force(rs, env, fx) == expected
        finally:
            rs._env.matchers = saved
    assert len(seen_lengths) > 3  # the generator exercises chains of continue rules


def test_keyword_matcher_finds_overlapping_keywords() -> None:
    matcher = KeywordMatcher(["fund", "refund", "re", "und"])
    assert matcher.find("refunds") == {"fund", "refund", "re", "und"}
    assert matcher.without_automaton().find("refunds") == matcher.find("refunds")
    assert KeywordMatcher([]).find("anything") == frozenset()


# ------------------------------------------------------------------------------------------
# Explanations
# ------------------------------------------------------------------------------------------


def test_explain_reports_failures_shadowing_and_the_decision() -> None:
    rs = build(
        """\
        - {name: VIP, when: {customer.tier: vip}, then: {priority: high}, continue: true}
        - name: Damaged
          when:
            channel: [email, whatsapp]
            any:
              - subject: {contains_any: [damaged, broken]}
              - text: {matches: '(?i)arrived (damaged|broken)'}
          then: {queue: logistics}
        - {name: Refunds, when: {text: {contains: refund}}, then: {queue: billing}}
        - {name: Money, when: {text: {contains: refund}}, then: {queue: billing}}
        """
    )
    env = envelope(subject="Where is it", text="I want a refund")
    fx = facts(customer={"tier": "gold"})
    ex = rs.explain(env, fx)
    by_name = {r.name: r for r in ex.rules}
    assert by_name["VIP"].failure is not None
    assert (
        str(by_name["VIP"].failure)
        == "rules[0].when.customer.tier: expected equals 'vip', got 'gold'"
    )
    damaged = by_name["Damaged"].failure
    assert damaged is not None and damaged.path == "rules[1].when.any"
    assert (
        "none matched" in damaged.actual and "contains_any ['damaged', 'broken']" in damaged.actual
    )
    assert by_name["Refunds"].applied and by_name["Refunds"].matched
    assert by_name["Money"].matched and not by_name["Money"].applied
    assert "'Refunds' decided first" in by_name["Money"].note
    assert ex.actions == rs.evaluate(env, fx).actions
    text = ex.to_text()
    assert "[APPLIED] Refunds" in text and "[matched] Money" in text
    assert "failed rules[0].when.customer.tier: expected equals 'vip', got 'gold'" in text
    assert "queue=billing" in text.split("Decision:")[1]
    data = json.loads(ex.to_json())
    assert data["actions"]["queue"] == "billing"
    assert data["rules"][0]["failed"]["expected"] == "equals 'vip'"
    assert data["message"]["channel"] == "email" and data["facts"]["customer"] == {"tier": "gold"}


def test_explain_first_failed_condition_is_in_written_order() -> None:
    # The engine tests the cheap channel first; the explanation names the first one written.
    rs = build("- {name: r, when: {subject: {matches: nope}, channel: sms}, then: {}}\n")
    failure = rs.explain(envelope(), facts()).rules[0].failure
    assert failure is not None and failure.path == "rules[0].when.subject.matches"
    assert rs.explain(envelope(), facts()).rules[0].failure is not None
    not_failure = build("- {name: r, when: {not: {channel: email}}, then: {}}\n").explain(
        envelope(), facts()
    )
    assert (
        not_failure.rules[0].failure is not None
        and not_failure.rules[0].failure.actual == "it held"
    )


def test_explain_without_rules_for_the_event() -> None:
    rs = build("- {name: r, then: {}}\n")
    ex = rs.explain(envelope(), facts(event="sla_breach"))
    assert ex.rules == () and "(no sla_breach rules)" in ex.to_text()


# ------------------------------------------------------------------------------------------
# Templates, directory, summary
# ------------------------------------------------------------------------------------------


def test_render_auto_reply_picks_the_language_variant() -> None:
    rs = build("- {name: r, then: {auto_reply: ack}}\n")
    context = {
        "ticket_ref": "OD-1042",
        "customer_name": "Ana",
        "queue_name": "Billing",
        "due": "tomorrow",
    }
    assert rs.render_auto_reply("ack", "en", context) == (
        "We got it [OD-1042]",
        "Hello Ana, Billing has OD-1042. Due tomorrow.",
    )
    assert rs.render_auto_reply("ack", "de", context)[0] == "Erhalten [OD-1042]"
    assert rs.render_auto_reply("ack", "pt-BR", context)[1] == "Olá Ana"
    assert rs.render_auto_reply("ack", "fr", context)[0] == "We got it [OD-1042]"
    assert rs.render_auto_reply("ack", None, {})[1] == "Hello ,  has . Due ."
    assert rs.render_auto_reply("ack", "en", {"ticket_ref": "A\nB"})[0] == "We got it [A B]"
    with pytest.raises(KeyError, match="unknown auto-reply template 'nope'"):
        rs.render_auto_reply("nope", "en", context)


def test_customer_facts_inline() -> None:
    rs = build("- {name: r, then: {}}\n")
    assert rs.customer_facts("CEO@bigco.com") == {"tier": "VIP", "name": "Dana", "region": "emea"}
    assert rs.customer_facts("sam@eu.bigco.com") == {"tier": "enterprise", "region": "emea"}
    assert rs.customer_facts("+4912345") == {}


def test_summary_counts() -> None:
    assert build("- {name: r, then: {}}\n").summary() == "t.yaml: 1 rule, 4 queues, 1 template — OK"


# ------------------------------------------------------------------------------------------
# Language detection (a fact the rules test)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("My package arrived damaged and I would like a refund", "en"),
        ("Mein Paket ist beschädigt angekommen, bitte um Erstattung", "de"),
        ("Mon colis est arrivé endommagé, je voudrais un remboursement", "fr"),
        ("Mi paquete llegó dañado, quiero un reembolso", "es"),
        ("Где мой заказ? Я жду уже две недели", "ru"),
        ("荷物が壊れて届きました", "ja"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


@pytest.mark.parametrize(
    "text", ["", "ok", "thx!", "OD-1042", "https://example.com/x?y=1", "12345 678"]
)
def test_detect_language_unsure_is_none(text: str) -> None:
    assert detect_language(text) is None


def test_detect_language_restricted_set() -> None:
    assert detect_language("Mein Paket ist beschädigt angekommen", languages={"en", "fr"}) is None


# ------------------------------------------------------------------------------------------
# Replay: a candidate file against past traffic
# ------------------------------------------------------------------------------------------


def test_replay_counts_moves_and_keeps_samples() -> None:
    current = build("- {name: Refunds, when: {text: {contains: refund}}, then: {queue: billing}}\n")
    candidate = build(
        """\
        - {name: Damaged, when: {text: {contains: damaged}}, then: {queue: logistics}}
        - {name: Refunds, when: {text: {contains: refund}}, then: {queue: billing, priority: high}}
        """
    )
    texts = ["refund please", "arrived damaged, refund", "hello", "damaged box", "refund now"]
    messages = [(f"OD-{i}", envelope(text=t), facts()) for i, t in enumerate(texts)]
    report = replay(current, candidate, messages, samples=1)
    assert report.total == 5 and report.changed == 4
    assert report.moves == {("billing", "logistics"): 1, ("general", "logistics"): 1}
    assert report.samples[("billing", "logistics")] == ["OD-1"]
    assert report.fields["priority"] == 2 and report.field_samples["priority"] == ["OD-0"]
    assert report.rule_changes[("Refunds", "Damaged")] == 1
    text = report.to_text()
    assert "4 decisions change (80.0 %)" in text and "billing → logistics" in text
    data = json.loads(report.to_json())
    assert data["changed"] == 4 and data["moves"][0]["count"] == 1


def test_facts_round_trip_for_replay() -> None:
    fx = facts(
        language="de",
        customer={"tier": "vip", "channels": ["sms"]},
        event="follow_up",
        ticket={"status": "open"},
    )
    assert Facts.from_dict(fx.to_dict()) == Facts(
        event="follow_up",
        now=OPEN,
        language="de",
        customer={"tier": "vip", "channels": ["sms"]},
        ticket={"status": "open"},
    )
