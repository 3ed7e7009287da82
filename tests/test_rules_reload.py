"""Reloading: a changed file is picked up, a broken one never replaces the last good rules."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from routing.rules import RulesError, RuleSet, RulesHolder

GOOD = """\
version: 1
defaults: {{queue: general}}
queues: [{{id: general}}, {{id: billing}}]
customers: {customers}
rules:
  - {{name: {name}, when: {{text: {{contains: refund}}}}, then: {{queue: billing}}}}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """Write and move the mtime on, as a later edit would (file systems may have coarse times)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def good(name: str = "Refunds", customers: str = "[]") -> str:
    return GOOD.format(name=name, customers=customers)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    write(path, good())
    return path


def names(rules: RuleSet) -> list[str]:
    return [r.name for r in rules.rules]


def test_broken_file_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, "version: 1\n")
    with pytest.raises(RulesError):
        RulesHolder(path)


def test_good_change_is_picked_up_after_the_interval(rules_file: Path) -> None:
    clock = Clock()
    changes: list[RuleSet] = []
    holder = RulesHolder(rules_file, check_interval=5, clock=clock, on_change=changes.append)
    first = holder.get()
    assert names(first) == ["Refunds"]
    write(rules_file, good("Money back"))
    assert holder.get() is first  # not yet time to look
    clock.now += 5
    assert names(holder.get()) == ["Money back"]
    assert names(holder()) == ["Money back"]
    assert len(changes) == 1 and changes[0] is holder.current
    clock.now += 5
    assert holder.check() is False  # nothing changed since
    write(rules_file, good("Polled"))
    assert holder.reload_if_changed() is True  # what a watcher thread calls, whatever the clock
    assert names(holder.current) == ["Polled"]


def test_broken_file_keeps_last_good_rules_and_logs_loudly(
    rules_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    holder = RulesHolder(rules_file, check_interval=1, clock=clock)
    good_rules = holder.get()
    write(rules_file, good().replace("queue: billing", "queue: biling"))
    clock.now += 1
    with caplog.at_level(logging.ERROR, logger="omnidesk.rules"):
        assert holder.get() is good_rules
    assert holder.last_error is not None
    assert "unknown queue 'biling' (did you mean 'billing'?)" in holder.last_error.errors[0]
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR
    assert "RULES NOT RELOADED" in record.getMessage()
    assert "the last good rules stay in force" in record.getMessage()
    assert f"{rules_file}:6:" in record.getMessage()

    # The same broken file is not reloaded (nor logged) again and again.
    caplog.clear()
    clock.now += 1
    with caplog.at_level(logging.ERROR, logger="omnidesk.rules"):
        assert holder.get() is good_rules
    assert caplog.records == []

    # Fixed: picked up, the error cleared.
    write(rules_file, good("Fixed"))
    clock.now += 1
    assert names(holder.get()) == ["Fixed"]
    assert holder.last_error is None


def test_deleted_file_keeps_rules(rules_file: Path) -> None:
    clock = Clock()
    holder = RulesHolder(rules_file, check_interval=1, clock=clock)
    rules_file.unlink()
    clock.now += 1
    assert names(holder.get()) == ["Refunds"]
    assert holder.last_error is not None and "no such file" in holder.last_error.errors[0]
    write(rules_file, good("Back"))
    clock.now += 1
    assert names(holder.get()) == ["Back"]


def test_reload_on_demand_and_on_request(rules_file: Path) -> None:
    clock = Clock()
    holder = RulesHolder(rules_file, check_interval=3600, clock=clock)
    rules_file.write_text(good("Forced"))  # same second: a signal is how the admin says "now"
    assert holder.reload() is True
    assert names(holder.current) == ["Forced"]
    rules_file.write_text(good("Requested"))
    holder.request_reload()  # what a SIGHUP handler calls
    assert names(holder.get()) == ["Requested"]
    rules_file.write_text("rules: [")
    assert holder.reload() is False
    assert names(holder.current) == ["Requested"]
    # A SIGHUP handler runs on the main thread, which may be inside a check holding the lock.
    rules_file.write_text(good("From a signal"))
    with holder._lock:
        assert holder.reload() is True
    assert names(holder.current) == ["From a signal"]


def test_a_changed_customers_csv_reloads_too(tmp_path: Path) -> None:
    csv = tmp_path / "customers.csv"
    write(csv, "email,tier\nana@example.com,gold\n")
    path = tmp_path / "routing.yaml"
    write(path, good(customers="customers.csv"))
    clock = Clock()
    holder = RulesHolder(path, check_interval=1, clock=clock)
    assert holder.get().customer_facts("ana@example.com") == {"tier": "gold"}
    write(csv, "email,tier\nana@example.com,platinum\n")
    clock.now += 1
    assert holder.get().customer_facts("ana@example.com") == {"tier": "platinum"}
    write(csv, "tier\nplatinum\n")  # broken CSV: the rules stay
    clock.now += 1
    assert holder.get().customer_facts("ana@example.com") == {"tier": "platinum"}
    assert holder.last_error is not None and "customers.csv:1:1" in holder.last_error.errors[0]


def test_concurrent_readers_always_see_a_whole_rule_set(rules_file: Path) -> None:
    holder = RulesHolder(rules_file, check_interval=0)
    seen: set[tuple[str, ...]] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(tuple(names(holder.get())))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for i in range(10):
            write(rules_file, good(f"Version {i}"))
            holder.reload()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert names(holder.current) == ["Version 9"]
    assert all(
        len(s) == 1 and s[0] in {"Refunds", *(f"Version {i}" for i in range(10))} for s in seen
    )
