"""Assignment under concurrent workers: turns are never taken twice and no agent is skipped."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config.settings import Settings
from tests.pipeline import Pipeline, make_mail

RULES = """
version: 1
defaults: {queue: general, priority: normal, auto_reply: false}
queues:
  - {id: general, name: General}
  - {id: billing, name: Billing, agents: [ana@example.com, bo@example.com, cy@example.com], assign: round_robin}
  - {id: logistics, name: Logistics, agents: [dee@example.com, eli@example.com], assign: least_loaded}
rules:
  - name: Billing address
    when: {to: billing@example.com}
    then: {queue: billing}
  - name: Logistics address
    when: {to: logistics@example.com}
    then: {queue: logistics}
"""


def _run(make_settings: Callable[..., Settings], tmp_path: Path, **db: str) -> dict[str, Counter[str]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    broker = None
    if "redis_url" in db:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=db["redis_url"], namespace=f"omnidesk-test-{uuid.uuid4().hex[:8]}")
    p = Pipeline(make_settings(rules_file=rules, **db), broker=broker).start(("worker", "smtp"))
    try:
        mails = [make_mail(to="billing@example.com", sender=f"b{n}@customer.test") for n in range(30)]
        mails += [make_mail(to="logistics@example.com", sender=f"l{n}@customer.test") for n in range(20)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(p.send, mails))
        p.wait_routed(timeout=60)
        by_queue: dict[str, Counter[str]] = {}
        for ticket in p.tickets():
            by_queue.setdefault(ticket["queue"], Counter())[ticket["assignee"]] += 1
        return by_queue
    finally:
        p.stop()


def _check(by_queue: dict[str, Counter[str]]) -> None:
    assert by_queue["billing"] == Counter({"ana@example.com": 10, "bo@example.com": 10, "cy@example.com": 10})
    assert by_queue["logistics"] == Counter({"dee@example.com": 10, "eli@example.com": 10})


def test_round_robin_and_least_loaded_on_sqlite(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    _check(_run(make_settings, tmp_path))


@pytest.mark.postgres
@pytest.mark.redis
def test_round_robin_and_least_loaded_under_concurrent_workers(
    make_settings: Callable[..., Settings], tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    _check(_run(make_settings, tmp_path, database_url=postgres_url, redis_url=redis_url))
