"""Settings: every one documented, bad values refused with the variable named, secrets masked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented_in_readme_and_env_example() -> None:
    from config.settings_doc import env_example, markdown_table

    readme = (ROOT / "README.md").read_text()
    # Regenerate both with `python -m config.settings_doc` after changing a setting.
    assert markdown_table() in readme, "the README's settings table is out of date"
    assert (ROOT / ".env.example").read_text() == env_example(), ".env.example is out of date"
    for name in Settings.model_fields:
        assert f"`OMNIDESK_{name.upper()}`" in readme


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"\*\*Run the tests\*\*.*?```sh\n(.+?)\n```", readme, re.S)
    assert command is not None
    assert command.group(1).strip() in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize(
    "variable, value, fragment",
    [
        ("OMNIDESK_HTTP_PORT", "eighty", "OMNIDESK_HTTP_PORT"),
        ("OMNIDESK_SMTP_DOMAINS", "not a domain", "OMNIDESK_SMTP_DOMAINS"),
        ("OMNIDESK_DATABASE_URL", "mysql://x", "OMNIDESK_DATABASE_URL"),
        ("OMNIDESK_OUTBOUND_SMTP_URL", "http://mail", "OMNIDESK_OUTBOUND_SMTP_URL"),
        ("OMNIDESK_TICKET_PREFIX", "od-", "OMNIDESK_TICKET_PREFIX"),
        ("OMNIDESK_SUPPORT_ADDRESS", "support", "OMNIDESK_SUPPORT_ADDRESS"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


def test_bad_value_stops_the_command_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "omnidesk.cli", "tickets", "list"],
        env={"OMNIDESK_HTTP_PORT": "99999", "PATH": "/usr/bin:/bin", "OMNIDESK_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OMNIDESK_HTTP_PORT" in lines[0]


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("OMNIDESK_TICKET_PREFIX=HELP\nOMNIDESK_SMTP_DOMAINS=a.test, b.test\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.ticket_prefix == "HELP"
    assert settings.smtp_domains == ("a.test", "b.test")


def test_passwords_are_masked_in_the_logged_settings() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        outbound_smtp_url="smtp://mailer:s3cret@mail.test:587",
        database_url="postgresql://omni:hunter2@db/omnidesk",
    )
    shown = repr(settings.redacted()) + repr(settings)
    assert "s3cret" not in shown and "hunter2" not in shown
    assert "mail.test" in shown
