"""The channels file: strict validation, every problem at its line and column, secrets from the
environment, and ``omnidesk channels check`` without a server (``--offline``, invalid files)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from intake.channels import (
    ChannelsConfig,
    ChannelsError,
    channels_path,
    configured_channels,
    load_channels,
    parse_channels,
)
from intake.email.imap.settings import ImapMailbox
from omnidesk.cli_channels import register

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "channels.example.yaml"
ENV = {"PW": "secret", "OMNIDESK_IMAP_SUPPORT_PASSWORD": "s1", "OMNIDESK_IMAP_BILLING_PASSWORD": "s2"}

GOOD = """\
imap:
  - name: support
    host: imap.example.com
    username: support@example.com
    password_env: PW
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ChannelsError) as error:
        parse_channels(text, "channels.yaml", environ=ENV if env is None else env)
    return error.value.errors


def one_error(text: str, env: dict[str, str] | None = None) -> str:
    found = errors_of(text, env)
    assert len(found) == 1, found
    return found[0]


# --- the good cases -----------------------------------------------------------------------------------
def test_minimal_mailbox_gets_the_documented_defaults() -> None:
    config = parse_channels(GOOD, environ=ENV)
    (box,) = config.imap
    assert box.security == "tls" and box.effective_port == 993
    assert box.folder == "INBOX" and box.move_to is None and box.idle is True
    assert box.poll_seconds == 60 and box.idle_seconds == 300
    assert box.recipient == "support@example.com"  # the username, an address
    assert box.source == "imap:support"
    assert box.password(ENV) == "secret"


def test_starttls_and_none_default_to_port_143_and_none_is_fine_on_localhost() -> None:
    text = GOOD.replace("host: imap.example.com", "host: imap.example.com\n    security: starttls")
    assert parse_channels(text, environ=ENV).imap[0].effective_port == 143
    for host in ("localhost", "127.0.0.1", "::1", "127.0.0.2"):
        local = GOOD.replace("host: imap.example.com", f"host: '{host}'\n    security: none")
        assert parse_channels(local, environ=ENV).imap[0].effective_port == 143


def test_the_example_file_is_valid_and_documents_every_key() -> None:
    config = load_channels(EXAMPLE, environ=ENV)
    assert [box.name for box in config.imap] == ["support", "billing"]
    text = EXAMPLE.read_text()
    for key in ImapMailbox.model_fields:
        assert re.search(rf"^\s*#?\s*-?\s*{key}:", text, re.MULTILINE), f"{key} is not documented in the example"


def test_an_empty_file_or_section_configures_no_channels() -> None:
    assert parse_channels("", environ={}) == ChannelsConfig()
    assert parse_channels("# nothing yet\n", environ={}) == ChannelsConfig()
    assert parse_channels("imap:\n", environ={}) == ChannelsConfig()
    assert parse_channels("imap: []\n", environ={}) == ChannelsConfig()


def test_the_default_path_may_be_absent_but_an_explicit_one_may_not(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()  # the tests run in an empty temp dir: config/channels.yaml is absent
    assert channels_path(settings) is None
    assert configured_channels(settings) == ChannelsConfig()
    explicit = make_settings(channels_file=tmp_path / "nowhere.yaml")
    with pytest.raises(ChannelsError) as error:
        configured_channels(explicit)
    assert error.value.errors == [f"{tmp_path / 'nowhere.yaml'}: no such file (set OMNIDESK_CHANNELS_FILE or create it)"]


def test_a_relative_ca_file_is_found_next_to_the_channels_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not checked here")
    path = tmp_path / "channels.yaml"
    path.write_text(GOOD + "    ca_file: ca.pem\n")
    assert load_channels(path, environ=ENV).imap[0].ca_file == str((tmp_path / "ca.pem").resolve())


# --- every problem, at its line and column ------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(
            GOOD + "    prot: 993\n",
            "channels.yaml:6:5: imap[0].prot: unknown key 'prot' (did you mean 'port'?); known keys: ",
            id="unknown-key",
        ),
        pytest.param(
            GOOD + "    password: hunter2\n",
            "channels.yaml:6:5: imap[0].password: unknown key 'password': passwords never go in this file",
            id="password-in-file",
        ),
        pytest.param(
            GOOD + "    port: '993'\n",
            "channels.yaml:6:11: imap[0].port: input should be a valid integer",
            id="port-as-string",
        ),
        pytest.param(
            GOOD + "    port: 70000\n",
            "channels.yaml:6:11: imap[0].port: input should be less than or equal to 65535",
            id="port-out-of-range",
        ),
        pytest.param(
            GOOD + "    poll_seconds: 0\n",
            "channels.yaml:6:19: imap[0].poll_seconds: input should be greater than or equal to 1",
            id="poll-zero",
        ),
        pytest.param(
            GOOD + "    idle_seconds: 3600\n",
            "channels.yaml:6:19: imap[0].idle_seconds: input should be less than or equal to 1740",
            id="idle-over-29-minutes",
        ),
        pytest.param(
            GOOD + "    idle: yes please\n",
            "channels.yaml:6:11: imap[0].idle: input should be a valid boolean",
            id="idle-not-bool",
        ),
        pytest.param(
            GOOD + "    security: tsl\n",
            "channels.yaml:6:15: imap[0].security: 'tsl' is not allowed: must be one of tls, starttls, none "
            "(did you mean 'tls'?)",
            id="security-typo",
        ),
        pytest.param(
            GOOD + "    security: none\n",
            "channels.yaml:6:15: imap[0].security: 'none' sends the password in clear text; it is only allowed "
            "for localhost, not 'imap.example.com': use tls or starttls",
            id="plaintext-to-remote-host",
        ),
        pytest.param(
            GOOD + "    move_to: INBOX\n",
            "channels.yaml:6:14: imap[0].move_to: must differ from folder",
            id="move-onto-itself",
        ),
        pytest.param(
            GOOD + "    import_since: last year\n",
            "channels.yaml:6:19: imap[0].import_since: input should be a valid date",
            id="import-since",
        ),
        pytest.param(
            GOOD.replace("- name: support", "- name: 'support desk'"),
            "channels.yaml:2:11: imap[0].name: must be a short name of letters, digits",
            id="name-with-space",
        ),
        pytest.param(
            GOOD.replace("password_env: PW", "password_env: my password"),
            "channels.yaml:5:19: imap[0].password_env: must be the name of an environment variable",
            id="password-env-not-a-name",
        ),
        pytest.param(
            GOOD.replace("    host: imap.example.com\n", ""),
            "channels.yaml:2:5: imap[0].host: missing (this key is required)",
            id="missing-host",
        ),
        pytest.param(
            GOOD.replace("username: support@example.com", "username: support"),
            "channels.yaml:2:5: imap[0].address: missing: username 'support' is not an email address",
            id="no-support-address",
        ),
        pytest.param(
            GOOD + "    address: support\n",
            "channels.yaml:6:14: imap[0].address: must be an email address",
            id="bad-address",
        ),
        pytest.param(
            GOOD + "    ca_file: missing.pem\n",
            "channels.yaml:6:14: imap[0].ca_file: no such file: missing.pem",
            id="ca-file-missing",
        ),
        pytest.param(
            GOOD.replace("host: imap.example.com", "host: imap://imap.example.com"),
            "channels.yaml:3:11: imap[0].host: must be a host name or IP address",
            id="host-is-a-url",
        ),
        pytest.param(
            GOOD + "smtpp: {}\n",
            "channels.yaml:6:1: smtpp: unknown key 'smtpp'; known keys: imap",
            id="unknown-section",
        ),
        pytest.param(
            GOOD.replace("imap:", "imapp:"),
            "channels.yaml:1:1: imapp: unknown key 'imapp' (did you mean 'imap'?)",
            id="section-typo",
        ),
        pytest.param(
            "imap:\n  name: support\n",
            "channels.yaml:2:3: imap: must be a list of entries, each starting with '- name:'",
            id="section-not-a-list",
        ),
        pytest.param(
            "imap:\n  - support\n",
            "channels.yaml:2:5: imap[0]: must be a mapping of keys",
            id="entry-not-a-mapping",
        ),
        pytest.param(
            "- imap\n",
            "channels.yaml:1:1: the channels file must be a mapping with sections such as imap:",
            id="file-not-a-mapping",
        ),
        pytest.param(
            "imap:\n  - name: support\n    host: [unclosed\n",
            "channels.yaml:4:1: YAML syntax: ",
            id="yaml-syntax",
        ),
        pytest.param(
            GOOD + "    host: other.example.com\n",
            "channels.yaml:6:5: imap[0].host: duplicate key 'host' (first given on line 3)",
            id="yaml-duplicate-key",
        ),
    ],
)
def test_each_problem_is_reported_at_its_position(text: str, expected: str) -> None:
    assert one_error(text).startswith(expected)


def test_duplicate_names_and_folders_are_refused() -> None:
    text = GOOD + """\
  - name: support
    host: imap.example.com
    username: SUPPORT@example.com
    password_env: PW
"""
    assert errors_of(text) == [
        # folder: is not written (INBOX by default): shown at the entry
        ("channels.yaml:6:5: imap[1].folder: folder 'INBOX' of SUPPORT@example.com on imap.example.com is "
         "already imported by the mailbox on line 2; one folder, one mailbox entry"),
        "channels.yaml:6:11: imap[1].name: duplicate mailbox name 'support' (first used on line 2)",
    ]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    text = """\
imap:
  - name: support
    host: mail.example.org
    security: none
    username: support@example.org
    password_env: PW
    poll_seconds: -1
  - name: sales
    username: sales
    password_env: SALES_PW
    folder: INBOX
    colour: blue
"""
    found = errors_of(text, env={"PW": "x", "SALES_PW": ""})
    assert [e.split(": ", 2)[0:2] for e in found] == [
        ["channels.yaml:4:15", "imap[0].security"],
        ["channels.yaml:7:19", "imap[0].poll_seconds"],
        ["channels.yaml:8:5", "imap[1].address"],
        ["channels.yaml:8:5", "imap[1].host"],
        ["channels.yaml:10:19", "imap[1].password_env"],  # SALES_PW is empty
        ["channels.yaml:12:5", "imap[1].colour"],
    ]
    assert "did you mean" not in found[-1]  # nothing close to "colour"


def test_a_missing_or_empty_password_variable_is_an_error_at_start() -> None:
    assert one_error(GOOD, env={}) == (
        "channels.yaml:5:19: imap[0].password_env: environment variable PW is not set; it must hold the "
        "password of mailbox 'support'"
    )
    assert "PW is empty" in one_error(GOOD, env={"PW": ""})
    # The variable is only needed to connect: the file alone can be checked without it.
    assert parse_channels(GOOD, environ={}, check_env=False).imap[0].name == "support"
    with pytest.raises(ChannelsError) as error:
        parse_channels(GOOD, environ={}, check_env=False).imap[0].password({})
    assert "environment variable PW is not set" in error.value.errors[0]


def test_errors_never_echo_a_secret_value() -> None:
    found = errors_of(GOOD + "    password: hunter2\n    password_env: PW\n")
    assert not any("hunter2" in line for line in found)


# --- omnidesk channels check (no server needed) ---------------------------------------------------------------
def run_check(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="omnidesk")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["channels", "check", *argv])
    status: int = args.handler(args, settings)
    return status


def test_check_reports_an_invalid_file_and_exits_1(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(GOOD + "    prot: 993\n    security: none\n")
    assert run_check([str(path)], make_settings()) == 1
    out = capsys.readouterr().out
    assert f"{path}:6:5: imap[0].prot: unknown key 'prot' (did you mean 'port'?)" in out
    assert f"{path}:7:15: imap[0].security:" in out


def test_check_offline_validates_file_and_password_variables(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(GOOD)
    settings = make_settings(channels_file=path)
    monkeypatch.delenv("PW", raising=False)
    assert run_check(["--offline"], settings) == 1
    assert "FAILED" in capsys.readouterr().out
    monkeypatch.setenv("PW", "secret")
    assert run_check(["--offline"], settings) == 0
    out = capsys.readouterr().out
    assert "support" in out and "OK" in out and "secret" not in out


def test_check_without_a_channels_file_says_so(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_check([], make_settings()) == 0
    assert "no channels configured" in capsys.readouterr().out


def test_check_json_output(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    path = tmp_path / "channels.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv("PW", "secret")
    assert run_check([str(path), "--offline", "--json"], make_settings()) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["mailboxes"][0]["name"] == "support"


FORMS = """\
forms:
  - id: billing
    title: Billing question
    allowed_origins: ["https://shop.example.com", "https://www.example.com"]
"""


def test_check_reports_the_web_forms_with_their_origins(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    path = tmp_path / "channels.yaml"
    path.write_text(GOOD + FORMS)
    monkeypatch.setenv("PW", "secret")
    settings = make_settings(public_url="https://desk.example.com/")
    assert run_check([str(path), "--offline"], settings) == 0
    out = capsys.readouterr().out
    assert f"{path}: 1 IMAP mailbox" in out
    assert f"{path}: 2 web forms" in out
    billing = next(line for line in out.splitlines() if line.strip().startswith("billing"))
    assert "OK" in billing and "'Billing question'" in billing
    assert "https://desk.example.com/form/billing" in billing
    assert "https://shop.example.com, https://www.example.com" in billing
    default = next(line for line in out.splitlines() if line.strip().startswith("default"))
    assert "https://desk.example.com/form (built in)" in default and "only its own page" in default

    assert run_check([str(path), "--offline", "--json"], settings) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    forms = {form["name"]: form for form in report["forms"]}
    assert forms["billing"] == {
        "name": "billing",
        "ok": True,
        "title": "Billing question",
        "url": "https://desk.example.com/form/billing",
        "intake_url": "https://desk.example.com/intake/form/billing",
        "allowed_origins": ["https://shop.example.com", "https://www.example.com"],
        "queue": None,
        "fields": [],
        "built_in": False,
    }
    assert forms["default"]["built_in"] is True and forms["default"]["allowed_origins"] == []
    assert report["mailboxes"][0]["name"] == "support"


def test_check_asks_every_adapter_so_a_new_channel_needs_no_cli_change(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from intake import registry
    from intake.adapter import AccountCheck, Adapter, ChannelReport

    class PagerAdapter(Adapter):
        """A channel the command has never heard of."""

        name = "pager"

        def probe(self, *, connect: bool = True, timeout: float = 20.0) -> ChannelReport:
            # Whatever it checks may use its settings, but no store: there is none in a check.
            with pytest.raises(RuntimeError, match="no database here"):
                self.ctx.db.read()
            return ChannelReport(
                key="pagers", kind=("pager", "pagers"),
                accounts=(AccountCheck("night-shift", False, "gateway unreachable: check the URL"),),
            )

    installed = registry.adapter_classes()
    monkeypatch.setattr(registry, "adapter_classes", lambda: (*installed, PagerAdapter))
    assert run_check([], make_settings()) == 1
    out = capsys.readouterr().out
    assert "no channels configured" in out
    assert "1 pager" in out and "night-shift  FAILED  gateway unreachable: check the URL" in out
    assert "1 of 2 failed" in out  # the pager and the built-in web form
