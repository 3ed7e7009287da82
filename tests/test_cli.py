"""The command line as an operator uses it: `omnidesk run` takes mail, `tickets` shows it."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from tests.peers import free_port
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import make_mail


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIDESK_")}
    env.update({"OMNIDESK_DATA_DIR": str(tmp_path / "var"), **extra})
    return env


def _omnidesk(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnidesk.cli", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def _start_run(tmp_path: Path, env: dict[str, str], smtp_port: int) -> subprocess.Popen[str]:
    """`omnidesk run` in a subprocess, returned once its SMTP port answers."""
    proc = subprocess.Popen([sys.executable, "-m", "omnidesk.cli", "run"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            smtplib.SMTP("127.0.0.1", smtp_port, timeout=2).quit()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError("omnidesk run exited:\n" + (proc.stdout.read() if proc.stdout else "")) from None
            assert time.monotonic() < deadline, "omnidesk run did not open its SMTP port"
            time.sleep(0.2)


def test_run_takes_mail_and_tickets_list_shows_it(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    smtp_port, http_port = free_port(), free_port()
    env = _env(tmp_path, OMNIDESK_SMTP_PORT=str(smtp_port), OMNIDESK_HTTP_PORT=str(http_port),
               OMNIDESK_SMTP_DOMAINS="example.com", OMNIDESK_OUTBOUND_SMTP_URL=smtp_sink.url)
    proc = _start_run(tmp_path, env, smtp_port)
    try:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as client:
            client.send_message(make_mail(subject="Where is my refund?"))
        ack = smtp_sink.wait_for(1, timeout=30)[0].message
        listed = json.loads(_omnidesk(tmp_path, "tickets", "list", "--json", env=env).stdout)
        assert len(listed) == 1
        ticket = listed[0]
        for key in ("ref", "status", "priority", "queue", "channel", "subject", "contact", "message_count"):
            assert key in ticket
        assert ticket["subject"] == "Where is my refund?" and ticket["contact"] == "ana@customer.test"
        assert f"[{ticket['ref']}]" in ack["Subject"]

        shown = json.loads(_omnidesk(tmp_path, "tickets", "show", ticket["ref"], "--json", env=env).stdout)
        assert shown["messages"][0]["direction"] == "inbound"
        assert {"direction", "channel", "text", "created_at"} <= set(shown["messages"][0])
        text = _omnidesk(tmp_path, "tickets", "list", env=env).stdout
        assert ticket["ref"] in text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "shutting down" in output


def test_show_unknown_ticket_says_what_to_do(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _omnidesk(tmp_path, "db", "upgrade", env=env)
    result = _omnidesk(tmp_path, "tickets", "show", "OD-999", env=env)
    assert result.returncode == 1
    assert "no ticket OD-999" in result.stderr and "tickets list" in result.stderr


def test_db_upgrade_is_repeatable(tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = _omnidesk(tmp_path, "db", "upgrade", env=env)
    second = _omnidesk(tmp_path, "db", "upgrade", env=env)
    assert first.returncode == 0 and second.returncode == 0
    assert "database at revision" in second.stdout


RULES_V1 = """version: 1
defaults: {queue: general, priority: normal, auto_reply: false}
queues:
  - {id: general, name: General}
  - {id: billing, name: Billing}
rules: []
"""
RULES_V2 = RULES_V1.replace("rules: []", """rules:
  - name: Invoices
    when: {subject: {contains: invoice}}
    then: {queue: billing}
""")
RULES_BROKEN = RULES_V2.replace("queue: billing}", "queue: biling}").replace("when:", "wen:")


def _queue_of_next_ticket(tmp_path: Path, env: dict[str, str], smtp_port: int, subject: str, seen: int) -> str:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=5) as client:
        client.send_message(make_mail(subject=subject))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = json.loads(_omnidesk(tmp_path, "tickets", "list", "--json", env=env).stdout or "[]")
        if len(listed) > seen:
            return str(listed[0]["queue"])
        time.sleep(0.2)
    raise AssertionError("no ticket")


def test_run_refuses_a_broken_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_BROKEN)
    result = _omnidesk(tmp_path, "run", env=_env(tmp_path, OMNIDESK_RULES_FILE=str(rules)))
    assert result.returncode == 1
    assert f"{rules}:8:5: rules[0].wen: unknown key 'wen' (did you mean 'when'?)" in result.stderr
    assert f"{rules}:9:19: rules[0].then.queue: unknown queue 'biling' (did you mean 'billing'?)" in result.stderr
    assert "INFO" not in result.stderr


def test_running_service_reloads_rules_and_keeps_the_last_good_ones(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_V1)
    smtp_port = free_port()
    env = _env(tmp_path, OMNIDESK_SMTP_PORT=str(smtp_port), OMNIDESK_HTTP_PORT=str(free_port()),
               OMNIDESK_RULES_FILE=str(rules), OMNIDESK_SMTP_DOMAINS="example.com")
    proc = _start_run(tmp_path, env, smtp_port)
    try:
        assert _queue_of_next_ticket(tmp_path, env, smtp_port, "invoice 1", 0) == "general"

        rules.write_text(RULES_V2)
        proc.send_signal(signal.SIGHUP)  # or wait: the file is also watched
        time.sleep(3)
        assert _queue_of_next_ticket(tmp_path, env, smtp_port, "invoice 2", 1) == "billing"

        rules.write_text(RULES_BROKEN)  # a bad edit reaches the running service
        time.sleep(3)
        assert _queue_of_next_ticket(tmp_path, env, smtp_port, "invoice 3", 2) == "billing"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert "rules reloaded" in output
    assert "RULES NOT RELOADED" in output and "biling" in output
