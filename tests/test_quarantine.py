"""Quarantine as an operator meets it: mail over a limit or unparseable is kept (never refused,
never blocking the rest), listed with its reason, shown raw, and replayed after a fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from config.settings import Settings
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import Pipeline, make_mail


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OMNIDESK_")}
    environ.update({"OMNIDESK_DATA_DIR": str(tmp_path / "var"), **env})
    return subprocess.run([sys.executable, "-m", "omnidesk.cli", *args], env=environ, cwd=tmp_path,
                          capture_output=True, timeout=60)


def _many_parts() -> EmailMessage:
    mail = make_mail(subject="Five photos of the damage")
    for n in range(5):
        mail.add_attachment(b"\x89PNG fake %d" % n, maintype="image", subtype="png", filename=f"photo{n}.png")
    return mail


def test_quarantine_list_show_and_replay(
    make_settings: Callable[..., Settings], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    p = Pipeline(make_settings(outbound_smtp_url=smtp_sink.url, mime_max_parts=3)).start(("worker", "smtp"))
    try:
        p.send(_many_parts())  # over the part limit
        with __import__("smtplib").SMTP(p.settings.smtp_host, p.settings.smtp_port) as client:
            client.sendmail("x@customer.test", ["support@example.com"], b"Subject: who am I\r\n\r\nno From header\r\n")
        p.send(make_mail(subject="An ordinary question"))  # the mail behind them still flows
        smtp_sink.wait_for(1)
        assert [t["subject"] for t in p.tickets()] == ["An ordinary question"]
    finally:
        p.stop()

    listed = _cli(tmp_path, "quarantine", "list", "--json", OMNIDESK_MIME_MAX_PARTS="3")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    reasons = sorted(r["reason"] for r in rows)
    assert len(rows) == 2
    assert "part" in reasons[1] or "part" in reasons[0]
    assert any("From" in r for r in reasons)
    parts_row = next(r for r in rows if "part" in r["reason"])

    raw = _cli(tmp_path, "quarantine", "show", str(parts_row["id"]), "--raw").stdout
    assert b"Five photos of the damage" in raw and b"photo4.png" in raw

    # The operator raises the limit and replays: the held message becomes a ticket; the
    # message with no sender stays in quarantine and the command says so (exit 1).
    replayed = _cli(tmp_path, "quarantine", "replay", "--all", OMNIDESK_MIME_MAX_PARTS="50")
    assert replayed.returncode == 1
    out = replayed.stdout.decode()
    assert f"{parts_row['id']}: requeued" in out and "still-unparseable" in out
    tickets = json.loads(_cli(tmp_path, "tickets", "list", "--json").stdout)
    assert sorted(t["subject"] for t in tickets) == ["An ordinary question", "Five photos of the damage"]
    photos = next(t for t in tickets if t["subject"].startswith("Five"))
    shown = json.loads(_cli(tmp_path, "tickets", "show", photos["ref"], "--json").stdout)
    assert len(shown["messages"][0]["attachments"]) == 5
    assert len(json.loads(_cli(tmp_path, "quarantine", "list", "--json").stdout)) == 1
