"""Rules engine benchmark: evaluation time per message at 10, 1,000 and 10,000 rules.

Generates a rules file of N rules shaped like a large deployment's (mostly keyword rules for
products and topics, rules per sender domain, per support address and per customer account, a few
regular expressions, and a handful of broad rules that every message must be tested against),
loads it through the real loader, then evaluates a fixed set of realistic envelopes and prints the
median and 99th percentile time per message.

    python -m bench.rules_bench                 # 10, 1000, 10000 rules
    python -m bench.rules_bench --rules 50000 --messages 500

Target: median ≤ 100 µs at 10,000 rules, growing far slower than the number of rules.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import statistics
import time
from collections.abc import Sequence

from intake.envelope import AttachmentRef, Channel, Envelope, Party, PartyKind
from routing.facts import Facts
from routing.rules import RuleSet, load_rules_text

__all__ = ["generate_envelopes", "generate_rules_yaml", "main"]

_TOPICS = (
    "refund",
    "invoice",
    "chargeback",
    "password",
    "login",
    "delivery",
    "tracking",
    "damaged",
    "broken",
    "cancel",
    "subscription",
    "upgrade",
    "discount",
    "voucher",
    "warranty",
    "return",
    "exchange",
    "missing",
    "late",
    "address",
    "payment",
    "declined",
    "receipt",
    "account",
)
_CHANNELS = ("email", "whatsapp", "webform", "sms", "slack")
_FILLER = (
    "hello I ordered last week and I am writing because there is a problem with it",
    "hi team, quick question about my order, can you please help me as soon as possible",
    "good morning, I have been waiting for an answer for days now and nothing happened",
    "dear support, please see the details below and let me know what you need from me",
    "hey, thanks for the quick reply earlier, one more thing came up that I need to ask",
)


def _product(i: int) -> str:
    # Product and SKU names: what large rule sets key on ("Acme X200 Pro" goes to hardware).
    return f"sku{i:05d}"


def generate_rules_yaml(n: int, seed: int = 1) -> str:
    """A valid rules file with ``n`` rules (``n`` ≥ 10), deterministic for a seed."""
    rng = random.Random(seed)
    queues = [f"q{i:02d}" for i in range(20)]
    lines = [
        "version: 1",
        "defaults: {queue: q00, priority: normal, calendar: office}",
        "calendars:",
        "  office: {timezone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: '09:00-17:00'}",
        "queues:",
        *[f"  - {{id: {q}, name: Queue {q}}}" for q in queues],
        "templates:",
        "  ack:",
        "    en: {subject: 'Ticket {ticket_ref}', body: 'Hello {customer_name}, we got it.'}",
        "rules:",
        # A few broad rules every message is tested against (no index key can narrow them).
        "  - name: after hours",
        "    when: {business_hours: false}",
        "    then: {tags: [after-hours]}",
        "    continue: true",
        "  - name: vip",
        "    when: {customer.tier: vip}",
        "    then: {priority: high}",
        "    continue: true",
        "  - name: german",
        "    when: {language: de}",
        "    then: {tags: [de]}",
        "    continue: true",
        "  - name: no plain-text spam",
        "    when: {not: {text: {matches: '[a-z]'}}}",
        "    then: {spam: true}",
    ]
    broad = 4
    for i in range(n - broad):
        queue = rng.choice(queues)
        kind = rng.random()
        name = f"rule {i:05d}"
        if kind < 0.55:
            words = ", ".join(_product(rng.randrange(n * 2)) for _ in range(rng.randint(1, 4)))
            channels = ", ".join(rng.sample(_CHANNELS, rng.randint(1, 3)))
            lines += [
                f"  - name: {name}",
                f"    when: {{channel: [{channels}], text: {{contains_any: [{words}]}}}}",
                f"    then: {{queue: {queue}, tags: [t{i % 97}]}}",
            ]
        elif kind < 0.65:
            words = ", ".join(_product(rng.randrange(n * 2)) for _ in range(2))
            lines += [
                f"  - name: {name}",
                "    when:",
                "      any:",
                f"        - subject: {{contains_any: [{words}]}}",
                f"        - text: {{contains: {_product(rng.randrange(n * 2))}}}",
                "      subject: {matches: '(?i)(order|case) #?\\d+'}",
                f"    then: {{queue: {queue}, category: c{i % 31}}}",
            ]
        elif kind < 0.80:
            lines += [
                f"  - name: {name}",
                f"    when: {{from: [customer{rng.randrange(n)}.example, vip{rng.randrange(n)}@mail.example]}}",
                f"    then: {{queue: {queue}, priority: high}}",
            ]
        elif kind < 0.90:
            lines += [
                f"  - name: {name}",
                f"    when: {{to: support{rng.randrange(n)}@omnidesk.example, has_attachment: true}}",
                f"    then: {{queue: {queue}, assign: round_robin}}",
            ]
        else:
            lines += [
                f"  - name: {name}",
                f"    when: {{customer.account: acct{rng.randrange(n)}, customer.open_tickets: {{gte: 2}}}}",
                f"    then: {{queue: {queue}, priority: urgent}}",
                "    continue: true",
            ]
    lines.append("customers:")
    lines.append("  - {domain: customer1.example, tier: vip, account: acct1}")
    return "\n".join(lines) + "\n"


def generate_envelopes(count: int, n_rules: int, seed: int = 2) -> list[tuple[Envelope, Facts]]:
    """Messages of a few sentences, some naming products or coming from addresses rules know."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 3, 4, 8, 30, tzinfo=dt.UTC)
    out = []
    for i in range(count):
        channel = rng.choice(_CHANNELS)
        words = [rng.choice(_TOPICS) for _ in range(2)]
        products = [_product(rng.randrange(n_rules * 2)) for _ in range(rng.randint(0, 2))]
        text = " ".join([rng.choice(_FILLER), *words, *products, rng.choice(_FILLER)]) + "."
        if channel == Channel.EMAIL:
            sender = Party(
                address=f"someone{i}@customer{rng.randrange(n_rules)}.example", name="Sam"
            )
            recipients: tuple[Party, ...] = (
                Party(address=f"support{rng.randrange(n_rules)}@omnidesk.example"),
            )
            subject = f"Re: order #{rng.randrange(10**6)} {words[0]}"
        elif channel == Channel.SLACK:
            sender = Party(address=f"U{i:08d}", kind=PartyKind.SLACK)
            recipients = (Party(address="C0SUPPORT", kind=PartyKind.SLACK),)
            subject = ""
        else:
            sender = Party(address=f"+49151{i:07d}", kind=PartyKind.PHONE)
            recipients = (Party(address="+4930123456", kind=PartyKind.PHONE),)
            subject = "" if channel != Channel.WEBFORM else f"Question about {words[0]}"
        attachments: tuple[AttachmentRef, ...] = ()
        if rng.random() < 0.15:
            attachments = (AttachmentRef(sha256="0" * 64, size=1000, filename="photo.jpg"),)
        envelope = Envelope(
            channel=channel,
            external_id=f"bench-{i}",
            received_at=now,
            sender=sender,
            recipients=recipients,
            subject=subject,
            text=text,
            attachments=attachments,
        )
        facts = Facts(
            now=now + dt.timedelta(minutes=37 * i),
            language=rng.choice(("en", "en", "de", None)),
            customer={"open_tickets": rng.randrange(4), "account": f"acct{rng.randrange(n_rules)}"},
        )
        out.append((envelope, facts))
    return out


def _measure(
    ruleset: RuleSet, messages: Sequence[tuple[Envelope, Facts]], rounds: int
) -> list[float]:
    for envelope, facts in messages:  # warm-up: caches, first-use paths
        ruleset.evaluate(envelope, facts)
    samples: list[float] = []
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for _ in range(rounds):
            for envelope, facts in messages:
                start = clock()
                ruleset.evaluate(envelope, facts)
                samples.append((clock() - start) / 1000)
    finally:
        gc.enable()
    return samples


def run(sizes: Sequence[int], count: int, rounds: int) -> None:
    print(f"{'rules':>8} {'load s':>8} {'indexed':>8} {'cands':>7} {'median µs':>10} {'p99 µs':>8}")
    for n in sizes:
        text = generate_rules_yaml(n)
        start = time.perf_counter()
        ruleset = load_rules_text(text, f"generated-{n}.yaml")
        load_seconds = time.perf_counter() - start
        messages = generate_envelopes(count, n)
        index = ruleset.index_for("new_ticket")
        assert index is not None
        candidates = statistics.mean(
            len(index.candidates(ruleset.message(e, f))) for e, f in messages
        )
        samples = sorted(_measure(ruleset, messages, rounds))
        median = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(
            f"{n:>8} {load_seconds:>8.2f} {index.indexed:>8} {candidates:>7.1f} {median:>10.1f} {p99:>8.1f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rules", type=int, nargs="*", default=[10, 1000, 10000], help="rule counts"
    )
    parser.add_argument("--messages", type=int, default=300, help="distinct messages")
    parser.add_argument("--rounds", type=int, default=5, help="times each message is evaluated")
    args = parser.parse_args(argv)
    run(args.rules, args.messages, args.rounds)


if __name__ == "__main__":
    main()
