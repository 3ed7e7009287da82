"""An agent works a ticket on the command line while the service runs: the same functions as the
API, the same timeline, replies sent by the running service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnidesk.cli import main
from tests.agent_desk import AgentDesk, running_desk
from tests.peers.smtp_sink import SmtpSink


@pytest.fixture
def desk(make_settings: Callable[..., Any], smtp_sink: SmtpSink, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[AgentDesk]:
    settings = make_settings(outbound_smtp_url=smtp_sink.url)
    monkeypatch.setenv("OMNIDESK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OMNIDESK_RULES_FILE", str(settings.rules_file))
    with running_desk(settings) as desk:
        yield desk


def _form_ticket(desk: AgentDesk) -> str:
    response = httpx.post(desk.base_url + "/intake/form", timeout=30, json={
        "submission_id": uuid.uuid4().hex, "name": "Maya Customer", "email": "maya@customer.test",
        "subject": "Cannot log in", "message": "The password reset link has expired."})
    assert response.status_code == 202
    desk.wait_routed()
    return str(desk.tickets()[0]["ref"])


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_an_agent_works_a_ticket_from_the_command_line(desk: AgentDesk, smtp_sink: SmtpSink,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    desk.agent("Sam Support", "sam@example.com")
    ref = _form_ticket(desk)
    smtp_sink.wait_for(1)  # the acknowledgement

    status, out, _ = run(capsys, "tickets", "assign", ref, "sam@example.com", "--as", "sam@example.com")
    assert status == 0 and "assignee sam@example.com" in out and "status open" in out
    status, out, _ = run(capsys, "tickets", "note", ref, "Customer is on the old app version.", "--as",
                         "sam@example.com")
    assert status == 0
    status, out, _ = run(capsys, "tickets", "tag", ref, "login", "app", "--as", "sam@example.com", "--json")
    assert status == 0 and set(json.loads(out)["tags"]) >= {"login", "app"}
    status, out, _ = run(capsys, "tickets", "reply", ref, "Here is a fresh link: https://example.com/reset",
                         "--as", "sam@example.com", "--json")
    assert status == 0, out
    reply = json.loads(out)
    assert reply["status"] == "pending" and reply["message_id"]
    mails = smtp_sink.wait_for(2)  # sent by the running service's sweeper
    assert mails[-1].message["Message-ID"] == reply["message_id"]
    assert "old app version" not in mails[-1].raw.decode()

    status, out, _ = run(capsys, "tickets", "show", ref)
    assert "internal note" in out and "Sam Support changed the status from new to open" in out

    with pytest.raises(SystemExit) as refused:  # argparse refuses it: nothing goes back to new
        run(capsys, "tickets", "status", ref, "new", "--as", "sam@example.com")
    assert refused.value.code == 2 and "invalid choice: 'new'" in capsys.readouterr().err
    status, _, err = run(capsys, "tickets", "note", ref, "hello", "--as", "nobody@example.com")
    assert status == 2 and "not an active agent" in err and "agents add" in err
    status, _, err = run(capsys, "tickets", "note", "OD-999", "hello", "--as", "sam@example.com")
    assert status == 1 and "no ticket OD-999" in err
