"""Agents, teams and API tokens.

`omnidesk agents …` as an admin runs it (through ``omnidesk.cli.main``); the API through a real
HTTP server (uvicorn, worker, SMTP intake) on SQLite and on PostgreSQL; `rules check` against the
store's accounts; and assignment, which skips inactive agents.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from sqlalchemy import select, text

from config.settings import Settings
from omnidesk.cli import main
from tests.agent_desk import AgentDesk, running_desk
from tests.pipeline import make_mail
from tickets.agents import authenticate, set_active
from tickets.db import Database
from tickets.models import ApiToken

# ana and cy take turns in billing; bo is deactivated in the store (and named in another case
# here, which must not matter); cy is not in the store at all, so still gets tickets.
RULES = """\
version: 1
defaults: {queue: general, priority: normal, auto_reply: false}
queues:
  - {id: general, name: General}
  - id: billing
    name: Billing
    agents: [ana@example.com, Bo@Example.com, cy@example.com]
    assign: round_robin
rules:
  - name: Billing address
    when: {to: billing@example.com}
    then: {queue: billing}
  - name: VIP desk
    when: {to: vip@example.com}
    then: {queue: billing, assign: bo@example.com}
"""
Run = Callable[..., tuple[int, str, str]]
TOKEN = re.compile(r"\bod_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")


def _token_in(out: str) -> str:
    found = TOKEN.findall(out)
    assert len(found) == 1, out
    return str(found[0])


def _prefix(token: str) -> str:
    return token.split("_")[1]


# --- the command line ---------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    """Run `omnidesk ARGS` on a data dir of this test; returns (status, stdout, stderr)."""
    monkeypatch.setenv("OMNIDESK_DATA_DIR", str(tmp_path / "var"))

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def _db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'var' / 'omnidesk.db'}")


def _who(db: Database, token: str) -> str | None:
    with db.read() as session:
        found = authenticate(session, token)
    return found[0].email if found else None


def test_add_prints_the_token_once_and_it_authenticates(cli: Run, tmp_path: Path) -> None:
    status, out, err = cli("agents", "add", "Ana Lima", "Ana@Example.com", "--role", "admin",
                           "--team", "billing", "--team", "general")
    assert status == 0, err
    token = _token_in(out)
    assert "will not be shown again" in out
    assert "Ana Lima <ana@example.com>: admin, teams billing, general" in out
    db = _db(tmp_path)
    assert _who(db, token) == "ana@example.com"

    status, out, _ = cli("agents", "tokens")
    assert _prefix(token) in out and token not in out and token.split("_", 2)[2] not in out
    assert "active" in out
    status, out, _ = cli("agents", "list")
    assert "ana@example.com" in out and "billing, general" in out
    db.dispose()


def test_add_json_gives_agent_and_token(cli: Run) -> None:
    import json

    status, out, _ = cli("agents", "add", "Bo", "bo@example.com", "--role", "agent", "--json")
    assert status == 0
    data = json.loads(out)
    assert set(data) == {"agent", "token"}
    assert data["agent"]["email"] == "bo@example.com" and data["agent"]["role"] == "agent"
    assert data["agent"]["teams"] == [] and data["agent"]["active"] is True
    assert TOKEN.fullmatch(data["token"])
    status, out, _ = cli("agents", "list", "--json")
    assert [a["email"] for a in json.loads(out)] == ["bo@example.com"]


def test_a_team_that_is_no_queue_is_warned_about(cli: Run) -> None:
    status, _, err = cli("agents", "add", "Ana", "ana@example.com", "--role", "agent", "--team", "billng")
    assert status == 0
    assert "warning: team 'billng' is not a queue in" in err and "(did you mean 'billing'?)" in err
    status, _, err = cli("agents", "update", "ana@example.com", "--team", "billing", "--team", "general")
    assert status == 0 and "warning" not in err


def test_bad_input_says_what_to_do(cli: Run) -> None:
    assert cli("agents", "add", "Ana", "ana@example.com", "--role", "admin")[0] == 0
    status, _, err = cli("agents", "add", "Ana again", "ANA@example.com", "--role", "agent")
    assert status == 2 and "exists already" in err and "agents list" in err
    status, _, err = cli("agents", "add", "X", "not-an-email", "--role", "agent")
    assert status == 2 and "is not an email address" in err
    status, _, err = cli("agents", "add", "X", "a@b@example.com", "--role", "agent")
    assert status == 2 and "is not an email address" in err
    status, _, err = cli("agents", "add", " ", "x@example.com", "--role", "agent")
    assert status == 2 and "name cannot be empty" in err
    status, _, err = cli("agents", "add", "Ana\tLima", "al@example.com", "--role", "agent")
    assert status == 2 and "control characters" in err
    status, _, err = cli("agents", "add", "X" * 301, "al@example.com", "--role", "agent")
    assert status == 2 and "at most 300 fit" in err
    status, _, err = cli("agents", "token", "ana@example.com", "--label", "a\nb")
    assert status == 2 and "label cannot contain control characters" in err
    status, _, err = cli("agents", "update", "ana\x00@example.com", "--name", "N")
    assert status == 1 and "no agent" in err
    status, _, err = cli("agents", "update", "12345678901234567890123", "--name", "N")
    assert status == 1 and "no agent" in err
    status, _, err = cli("agents", "add", "X", "x@example.com", "--role", "agent", "--team", " ")
    assert status == 2 and "team" in err
    status, _, err = cli("agents", "update", "nobody@example.com", "--name", "N")
    assert status == 1 and "no agent nobody@example.com" in err
    status, _, err = cli("agents", "update", "ana@example.com")
    assert status == 2 and "nothing to change" in err
    status, _, err = cli("agents", "revoke", "abcdef123456")
    assert status == 1 and "no token with prefix" in err and "agents tokens" in err
    status, _, err = cli("agents", "token", "nobody@example.com")
    assert status == 1 and "no agent" in err
    with pytest.raises(SystemExit) as exc:
        cli("agents", "add", "X", "x@example.com", "--role", "boss")
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli("agents", "add", "X", "x@example.com")  # --role is required


def test_list_hides_inactive_unless_all_and_says_when_cut(cli: Run) -> None:
    import json

    for name in ("ana", "bo", "cy"):
        assert cli("agents", "add", name.title(), f"{name}@example.com", "--role", "agent")[0] == 0
    status, out, _ = cli("agents", "deactivate", "bo@example.com")
    assert status == 0 and "deactivated bo@example.com" in out and "agents activate" in out
    assert "inactive already" in cli("agents", "deactivate", "bo@example.com")[1]

    status, out, err = cli("agents", "list")
    assert "ana@example.com" in out and "bo@example.com" not in out
    assert "1 inactive agent not shown; use --all" in err
    status, out, err = cli("agents", "list", "--all", "--json")
    listed = json.loads(out)
    assert [(a["email"], a["active"]) for a in listed] == [
        ("ana@example.com", True), ("bo@example.com", False), ("cy@example.com", True)]
    assert err == ""
    status, out, err = cli("agents", "list", "--all", "--limit", "1", "--json")
    assert len(json.loads(out)) == 1 and "showing 1 of 3 agents; use --limit" in err
    with pytest.raises(SystemExit):
        cli("agents", "list", "--limit", "0")


def test_update_activate_and_the_last_admin(cli: Run, tmp_path: Path) -> None:
    import json

    token = _token_in(cli("agents", "add", "Ana", "ana@example.com", "--role", "admin")[1])
    bo = _token_in(cli("agents", "add", "Bo", "bo@example.com", "--role", "agent", "--team", "general")[1])
    db = _db(tmp_path)

    status, out, err = cli("agents", "update", "ana@example.com", "--role", "agent")
    assert status == 2 and "only active admin" in err and "--role admin" in err
    status, _, err = cli("agents", "deactivate", "ana@example.com")
    assert status == 2 and "only active admin" in err
    assert _who(db, token) == "ana@example.com"

    status, out, _ = cli("agents", "update", "BO@example.com", "--role", "admin", "--name", "Bo Brown",
                         "--team", "billing", "--team", "vip", "--json")
    assert status == 0
    assert {k: json.loads(out)[k] for k in ("name", "role", "teams")} == {
        "name": "Bo Brown", "role": "admin", "teams": ["billing", "vip"]}
    status, out, _ = cli("agents", "update", "bo@example.com", "--no-teams")
    assert status == 0 and "no teams" in out
    # Now there is another admin: ana may step down.
    assert cli("agents", "update", "ana@example.com", "--role", "agent")[0] == 0

    assert cli("agents", "deactivate", "bo@example.com")[0] == 2  # the last admin again
    assert cli("agents", "deactivate", "ana@example.com")[0] == 0
    assert _who(db, token) is None  # an inactive agent's token stops working at once
    status, _, err = cli("agents", "token", "ana@example.com")
    assert status == 2 and "inactive" in err and "agents activate ana@example.com" in err
    assert cli("agents", "activate", "ana@example.com")[0] == 0
    assert _who(db, token) == "ana@example.com" and _who(db, bo) == "bo@example.com"
    db.dispose()


def test_token_revoke_and_rotate(cli: Run, tmp_path: Path) -> None:
    import json

    first = _token_in(cli("agents", "add", "Ana", "ana@example.com", "--role", "agent")[1])
    status, out, _ = cli("agents", "token", "ana@example.com", "--label", "zapier")
    second = _token_in(out)
    assert status == 0 and "will not be shown again" in out
    db = _db(tmp_path)
    assert _who(db, first) == _who(db, second) == "ana@example.com"

    status, out, _ = cli("agents", "rotate", _prefix(second))
    third = _token_in(out)
    assert status == 0 and "will not be shown again" in out and _prefix(second) in out
    assert _who(db, second) is None and _who(db, third) == "ana@example.com"
    status, _, err = cli("agents", "rotate", _prefix(second))
    assert status == 2 and "revoked already" in err

    status, out, _ = cli("agents", "tokens", "ana@example.com", "--json")
    tokens = json.loads(out)
    assert [t["prefix"] for t in tokens] == [_prefix(first), _prefix(third)]
    assert tokens[1]["label"] == "zapier" and tokens[1]["state"] == "active"  # the label carries over
    assert all(set(t) >= {"prefix", "agent", "label", "created_at", "last_used_at", "revoked_at"} for t in tokens)
    assert not any(tok in out for tok in (first, second, third))
    status, out, _ = cli("agents", "tokens", "--all", "--json")
    assert [t["state"] for t in json.loads(out)] == ["active", "revoked", "active"]

    status, out, _ = cli("agents", "revoke", _prefix(first))
    assert status == 0 and "revoked token" in out
    assert _who(db, first) is None
    assert "revoked already" in cli("agents", "revoke", first)[1]  # the whole token names it too
    status, out, _ = cli("agents", "rotate", _prefix(third), "--json")
    data = json.loads(out)
    assert _who(db, data["token"]) == "ana@example.com" and _who(db, third) is None
    db.dispose()


def test_tokens_are_stored_hashed(cli: Run, tmp_path: Path) -> None:
    token = _token_in(cli("agents", "add", "Ana", "ana@example.com", "--role", "admin")[1])
    _assert_hashed(_db(tmp_path), token)
    secret = token.split("_", 2)[2]
    for path in (tmp_path / "var").glob("omnidesk.db*"):  # the database and its WAL
        assert secret.encode() not in path.read_bytes()


def _assert_hashed(db: Database, token: str) -> None:
    """Only the SHA-256 of the token is stored: no column of any table holds the secret."""
    secret = token.split("_", 2)[2]
    with db.read() as session:
        row = session.execute(select(ApiToken).where(ApiToken.prefix == _prefix(token))).scalar_one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        for table in ("agents", "api_tokens"):
            for values in session.execute(text(f"SELECT * FROM {table}")):
                assert not any(secret in str(v) for v in values), table
    db.dispose()


def test_commands_on_postgres_need_the_schema_first(
    cli: Run, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    import json

    monkeypatch.setenv("OMNIDESK_DATABASE_URL", postgres_url)
    status, _, err = cli("agents", "list")
    assert status == 2 and "omnidesk db upgrade" in err
    assert cli("db", "upgrade")[0] == 0
    token = _token_in(cli("agents", "add", "Ana", "ana@example.com", "--role", "admin", "--team", "vip")[1])
    assert json.loads(cli("agents", "list", "--json")[1])[0]["teams"] == ["vip"]
    _assert_hashed(Database(postgres_url), token)


def test_two_admins_demoting_each_other_at_once_leave_one_admin(postgres_url: str) -> None:
    import threading

    from tickets.agents import AgentError, add_agent, list_agents, update_agent
    from tickets.migrate import upgrade

    db = Database(postgres_url)
    upgrade(db)
    with db.write() as session:
        add_agent(session, name="Ana", email="ana@example.com", role="admin")
        add_agent(session, name="Bo", email="bo@example.com", role="admin")
    locked, release = threading.Event(), threading.Event()

    def demote_ana() -> None:
        with db.write() as session:
            update_agent(session, "ana@example.com", role="agent")
            locked.set()
            release.wait(10)  # hold the transaction open while bo's demotion runs into it

    first = threading.Thread(target=demote_ana)
    first.start()
    assert locked.wait(10)
    threading.Timer(0.5, release.set).start()
    with pytest.raises(AgentError) as refused, db.write() as session:
        update_agent(session, "bo@example.com", role="agent")
    first.join(10)
    assert refused.value.code == "last_admin"
    with db.read() as session:
        assert [(a.email, a.role) for a in list_agents(session)] == [
            ("ana@example.com", "agent"), ("bo@example.com", "admin")]
    db.dispose()


# --- rules check ---------------------------------------------------------------------------------
def _position(rules: str, line_text: str, word: str) -> str:
    """``LINE:COL`` of ``word`` on the line of ``rules`` that contains ``line_text``."""
    for number, line in enumerate(rules.splitlines(), 1):
        if line_text in line:
            return f"{number}:{line.index(word) + 1}"
    raise AssertionError(f"no line with {line_text!r}")


def test_rules_check_warns_about_agents_the_store_does_not_know(cli: Run, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    # No store yet: one line says so, the check passes, and nothing is created.
    status, out, _ = cli("rules", "check", str(rules))
    assert status == 0, out
    assert out.splitlines()[0].endswith("— OK")
    assert out.splitlines()[1].startswith("agents not checked against the store: there is none at")
    assert len(out.splitlines()) == 2 and not (tmp_path / "var" / "omnidesk.db").exists()

    cli("agents", "add", "Ana", "ana@example.com", "--role", "admin")
    cli("agents", "add", "Bo", "bo@example.com", "--role", "agent")
    cli("agents", "deactivate", "bo@example.com")
    status, out, _ = cli("rules", "check", str(rules))
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].endswith("— OK")
    warnings = [line for line in lines if line.startswith("warning: ")]
    agents_line = "agents: [ana@example.com"
    assert warnings == [
        (f"warning: {rules}:{_position(RULES, agents_line, 'Bo@')}: queues[1].agents[1]: Bo@Example.com is an "
         "inactive agent; assignment skips it. Reactivate it (`omnidesk agents activate Bo@Example.com`) or take "
         "it out of the file"),
        (f"warning: {rules}:{_position(RULES, agents_line, 'cy@')}: queues[1].agents[2]: cy@example.com is not an "
         "agent in the store; it is still assigned tickets. Add it (`omnidesk agents add NAME cy@example.com "
         "--role agent`) or fix the address"),
        (f"warning: {rules}:{_position(RULES, 'assign: bo@', 'bo@')}: rules[1].then.assign: bo@example.com is an "
         "inactive agent; assignment skips it. Reactivate it (`omnidesk agents activate bo@example.com`) or take "
         "it out of the file"),
    ]
    assert lines[-1] == f"{rules}: 3 warnings about agents (the rules still load and route)"

    cli("agents", "activate", "bo@example.com")
    cli("agents", "add", "Cy", "cy@example.com", "--role", "agent")
    status, out, _ = cli("rules", "check", str(rules))
    assert status == 0 and len(out.splitlines()) == 1, out


def test_rules_check_on_a_store_without_the_agents_table(cli: Run, tmp_path: Path) -> None:
    """A store from before agent accounts (or a broken file) is one line, not a traceback."""
    from tickets.migrate import upgrade

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    upgrade(_db(tmp_path), "0003")
    status, out, _ = cli("rules", "check", str(rules))
    assert status == 0
    assert out.splitlines()[1].startswith("agents not checked against the store: cannot read agents")
    assert "omnidesk db upgrade" in out and len(out.splitlines()) == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.replace("version: 1", "version: 1\nbogus: 2"))
    status, out, _ = cli("rules", "check", str(broken))
    assert status == 1 and "agents not checked" not in out


# --- the API on a running desk ---------------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def desk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentDesk]:
    """One running Omnidesk per database for the API tests; each test uses its own agents."""
    from tests.peers.postgres import fresh_database

    root = tmp_path_factory.mktemp(f"desk-{request.param}")
    (root / "rules.yaml").write_text(RULES)
    overrides: dict[str, Any] = {}
    with ExitStack() as stack:
        if request.param == "postgres":
            overrides["database_url"] = stack.enter_context(fresh_database(request.getfixturevalue("postgres_server")))
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        for key in [k for k in os.environ if k.startswith("OMNIDESK_")]:
            mp.delenv(key)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, data_dir=root / "var", smtp_domains=("example.com",),
            support_address="support@example.com", sweep_grace_seconds=1.0, sweep_interval_seconds=0.5,
            rules_file=root / "rules.yaml", **overrides,
        )
        yield stack.enter_context(running_desk(settings))


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["x-request-id"] and error["message"]
    return error


def test_no_token_is_401_in_the_error_shape(desk: AgentDesk) -> None:
    with desk.client() as client:
        for method, path in (("GET", "/api/me"), ("GET", "/api/agents"), ("POST", "/api/agents"),
                             ("DELETE", "/api/tokens/abc")):
            response = client.request(method, path)
            error = _error(response, 401, "unauthorized")
            assert "Authorization: Bearer" in error["message"] and "omnidesk agents" in error["message"]
            assert response.headers["www-authenticate"].startswith("Bearer")
        response = client.get("/api/me", headers={"X-Request-ID": "req-42"})
        assert _error(response, 401, "unauthorized")["request_id"] == "req-42"
        assert response.headers["x-request-id"] == "req-42"


def test_bad_tokens_are_401(desk: AgentDesk) -> None:
    token = desk.agent("Bad Tokens", "bad.tokens@example.com")
    wrong_secret = token[: -4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for header in (f"Bearer {wrong_secret}", "Bearer nope", "Bearer od_000000000000_secret", "Bearer od_",
                   f"Basic {token}", f"Token {token}", "Bearer"):
        with httpx.Client(base_url=desk.base_url, headers={"Authorization": header}) as client:
            _error(client.get("/api/me"), 401, "unauthorized")
    with desk.client(token) as client:
        assert client.get("/api/me").status_code == 200


def test_inactive_agents_token_is_401(desk: AgentDesk) -> None:
    token = desk.agent("Gone Soon", "gone.soon@example.com")
    with desk.client(token) as client:
        assert client.get("/api/me").status_code == 200
        with desk.app.db.write() as session:
            set_active(session, "gone.soon@example.com", False)
        _error(client.get("/api/me"), 401, "unauthorized")
        with desk.app.db.write() as session:
            set_active(session, "gone.soon@example.com", True)
        assert client.get("/api/me").status_code == 200


def test_an_agent_may_not_use_admin_routes(desk: AgentDesk) -> None:
    token = desk.agent("Plain Agent", "plain.agent@example.com", teams=("billing",))
    with desk.client(token) as client:
        me = client.get("/api/me")
        assert me.status_code == 200
        assert {k: me.json()[k] for k in ("name", "email", "role", "teams")} == {
            "name": "Plain Agent", "email": "plain.agent@example.com", "role": "agent", "teams": ["billing"]}
        for method, path, body in (
            ("GET", "/api/agents", None),
            ("POST", "/api/agents", {"name": "X", "email": "x@example.com"}),
            ("PATCH", "/api/agents/plain.agent@example.com", {"role": "admin"}),
            ("GET", "/api/agents/plain.agent@example.com/tokens", None),
            ("POST", "/api/agents/plain.agent@example.com/tokens", None),
            ("DELETE", f"/api/tokens/{_prefix(token)}", None),
            ("POST", f"/api/tokens/{_prefix(token)}/rotate", None),
        ):
            error = _error(client.request(method, path, json=body), 403, "forbidden")
            assert "admin role" in error["message"]
        # Nothing of that happened.
        assert client.get("/api/me").json()["role"] == "agent"


def test_an_admin_manages_agents_and_tokens(desk: AgentDesk) -> None:
    admin = desk.agent("Admin One", "admin.one@example.com", role="admin")
    with desk.client(admin) as client:
        created = client.post("/api/agents", json={"name": "New Hire", "email": "New.Hire@example.com",
                                                   "teams": ["billing"], "token_label": "laptop"})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["agent"]["email"] == "new.hire@example.com" and body["agent"]["role"] == "agent"
        assert body["prefix"] == _prefix(body["token"])
        first = body["token"]
        with desk.client(first) as hire:
            assert hire.get("/api/me").json()["email"] == "new.hire@example.com"

        listed = client.get("/api/agents", params={"limit": 1000}).json()
        assert "new.hire@example.com" in [a["email"] for a in listed["items"]]
        assert listed["total"] >= len(listed["items"]) >= 2
        assert client.get("/api/agents/NEW.HIRE@example.com").json()["teams"] == ["billing"]

        changed = client.patch("/api/agents/new.hire@example.com", json={"teams": ["billing", "vip"],
                                                                         "name": "New Hire Jr"})
        assert changed.status_code == 200 and changed.json()["teams"] == ["billing", "vip"]
        assert changed.json()["name"] == "New Hire Jr" and changed.json()["role"] == "agent"

        issued = client.post("/api/agents/new.hire@example.com/tokens", json={"label": "zapier"})
        assert issued.status_code == 201
        second = issued.json()["token"]
        tokens = client.get("/api/agents/new.hire@example.com/tokens")
        assert [(t["prefix"], t["label"], t["state"]) for t in tokens.json()["items"]] == [
            (_prefix(first), "laptop", "active"), (_prefix(second), "zapier", "active")]
        assert first not in tokens.text and second not in tokens.text

        assert client.delete(f"/api/tokens/{_prefix(first)}").status_code == 204
        assert client.delete(f"/api/tokens/{_prefix(first)}").status_code == 204  # idempotent
        rotated = client.post(f"/api/tokens/{_prefix(second)}/rotate")
        assert rotated.status_code == 201
        third = rotated.json()["token"]
        for dead in (first, second):
            with desk.client(dead) as hire:
                _error(hire.get("/api/me"), 401, "unauthorized")
        with desk.client(third) as hire:
            assert hire.get("/api/me").status_code == 200
        _error(client.post(f"/api/tokens/{_prefix(second)}/rotate"), 409, "token_revoked")
        everything = client.get("/api/agents/new.hire@example.com/tokens", params={"include_revoked": True})
        assert [t["state"] for t in everything.json()["items"]] == ["revoked", "revoked", "active"]

        # Deactivating over the API shuts the agent out at once.
        assert client.patch("/api/agents/new.hire@example.com", json={"active": False}).json()["active"] is False
        with desk.client(third) as hire:
            _error(hire.get("/api/me"), 401, "unauthorized")
        assert "new.hire@example.com" not in [a["email"] for a in client.get("/api/agents").json()["items"]]
        inactive = client.get("/api/agents", params={"include_inactive": True, "limit": 1000}).json()["items"]
        assert "new.hire@example.com" in [a["email"] for a in inactive]
        _error(client.post("/api/agents/new.hire@example.com/tokens"), 409, "agent_inactive")

        # An admin can promote: the new admin's token then works on admin routes.
        promoted = client.post("/api/agents", json={"name": "Second Admin", "email": "admin.two@example.com",
                                                    "role": "admin"}).json()
        with desk.client(promoted["token"]) as two:
            assert two.get("/api/agents").status_code == 200
    _assert_hashed(desk.app.db, third)


def test_admin_requests_that_cannot_be_done(desk: AgentDesk) -> None:
    admin = desk.agent("Admin Errors", "admin.errors@example.com", role="admin")
    with desk.client(admin) as client:
        error = _error(client.post("/api/agents", json={"name": "Dup", "email": "ADMIN.errors@example.com"}),
                       409, "agent_exists")
        assert "exists already" in error["message"]
        _error(client.post("/api/agents", json={"name": "X", "email": "x-at-example.com"}), 422, "invalid_email")
        error = _error(client.post("/api/agents", json={"name": "X", "email": "x@example.com", "team": ["a"]}),
                       422, "invalid")
        assert any(d["where"] == "body.team" for d in error["details"])
        _error(client.post("/api/agents", json={"name": "X", "email": "x@example.com", "role": "boss"}),
               422, "invalid")
        _error(client.post("/api/agents", json={"name": " ", "email": "x@example.com"}), 422, "invalid_name")
        _error(client.post("/api/agents", json={"name": "X\u0000", "email": "x@example.com"}), 422, "invalid_name")
        _error(client.post("/api/agents", json={"name": "X", "email": "x@example.com", "teams": ["a\tb"]}),
               422, "invalid_team")
        _error(client.post("/api/agents", json={"name": "X", "email": "x@example.com", "active": 1}), 422, "invalid")
        _error(client.patch("/api/agents/admin.errors@example.com", json={"active": 0}), 422, "invalid")
        _error(client.get("/api/agents/nul%00@example.com"), 404, "agent_not_found")  # PostgreSQL takes no NUL
        _error(client.get("/api/agents", params={"includeInactive": "true"}), 422, "invalid")
        _error(client.post("/api/agents", content=b"{not json", headers={"content-type": "application/json"}),
               422, "invalid")
        _error(client.patch("/api/agents/admin.errors@example.com", json={"email": "new@example.com"}),
               422, "invalid")
        _error(client.patch("/api/agents/nobody@example.com", json={"name": "N"}), 404, "agent_not_found")
        _error(client.get("/api/agents/nobody@example.com"), 404, "agent_not_found")
        _error(client.get("/api/agents/nobody@example.com/tokens"), 404, "agent_not_found")
        _error(client.post("/api/agents/nobody@example.com/tokens"), 404, "agent_not_found")
        _error(client.delete("/api/tokens/000000000000"), 404, "token_not_found")
        _error(client.post("/api/tokens/000000000000/rotate"), 404, "token_not_found")
        _error(client.get("/api/agents", params={"limit": 0}), 422, "invalid")
        # Failed requests changed nothing.
        assert client.get("/api/agents/x@example.com").status_code == 404


def test_unknown_routes_and_methods_answer_in_the_error_shape(desk: AgentDesk) -> None:
    with desk.client() as client:
        error = _error(client.get("/api/nothing"), 404, "not_found")
        assert "/api/nothing" in error["message"] and "openapi.json" in error["message"]
        _error(client.get("/api"), 404, "not_found")
        response = client.put("/api/me")
        error = _error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET" and "use GET" in error["message"]
        # Outside /api the default stays (the web form and the webhooks are not the agent API).
        outside = client.get("/nothing")
        assert outside.status_code == 404 and outside.json() == {"detail": "Not Found"}


def test_last_use_of_a_token_is_recorded(desk: AgentDesk) -> None:
    token = desk.agent("Used Once", "used.once@example.com")
    with desk.client(token) as client:
        assert client.get("/api/me").status_code == 200
    with desk.app.db.read() as session:
        used = session.execute(select(ApiToken.last_used_at).where(ApiToken.prefix == _prefix(token))).scalar_one()
    assert used is not None


def test_openapi_documents_every_error(desk: AgentDesk) -> None:
    spec = httpx.get(desk.base_url + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["token"]["description"]}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    operations = {(m.upper(), p): op for p, item in spec["paths"].items() if p.startswith("/api/")
                  for m, op in item.items()}
    assert {("GET", "/api/me"), ("GET", "/api/agents"), ("POST", "/api/agents"), ("PATCH", "/api/agents/{email}"),
            ("POST", "/api/agents/{email}/tokens"), ("GET", "/api/agents/{email}/tokens"),
            ("DELETE", "/api/tokens/{prefix}"), ("POST", "/api/tokens/{prefix}/rotate")} <= set(operations)
    for (method, path), op in operations.items():
        if "agents" not in op.get("tags", []):
            continue
        assert "HTTPValidationError" not in str(op), (method, path)  # FastAPI's 422 is not what we answer
        assert op["security"] == [{"token": []}], path
        expected = {"401"} if path == "/api/me" else {"401", "403", "422"}
        assert expected <= set(op["responses"]), (method, path)
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == error_ref, (method, path, status)
    assert {"404", "409"} <= set(operations[("PATCH", "/api/agents/{email}")]["responses"])
    assert "409" in operations[("POST", "/api/agents")]["responses"]
    new_agent = spec["components"]["schemas"]["NewAgent"]
    assert new_agent["additionalProperties"] is False
    assert operations[("POST", "/api/agents")]["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IssuedToken"}


# --- the store's accounts decide assignment -------------------------------------------------------
def test_inactive_agents_are_not_assigned_and_rules_check_warns(
    desk: AgentDesk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    desk.agent("Ana", "ana@example.com")
    desk.agent("Bo", "bo@example.com")
    with desk.app.db.write() as session:
        set_active(session, "bo@example.com", False)
    for n in range(4):
        desk.send(make_mail(to="billing@example.com", sender=f"rr{n}@customer.test", subject=f"Invoice {n}"))
    desk.send(make_mail(to="vip@example.com", sender="vip@customer.test", subject="VIP"))
    desk.wait_until(lambda: len([t for t in desk.tickets() if t["queue"] == "billing"]) == 5, what="5 tickets")
    desk.wait_routed()
    billing = [t for t in desk.tickets() if t["queue"] == "billing"]
    # bo is skipped in the turns (named Bo@Example.com in the file) and when a rule names it;
    # cy, unknown to the store, is still assigned.
    assert Counter(t["assignee"] for t in billing if t["subject"] != "VIP") == {
        "ana@example.com": 2, "cy@example.com": 2}
    assert [t["assignee"] for t in billing if t["subject"] == "VIP"] == [None]

    # `rules check` against the running service's store: warnings, status 0, the service unharmed.
    for key in [k for k in os.environ if k.startswith("OMNIDESK_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OMNIDESK_DATA_DIR", str(desk.settings.data_dir))
    if desk.settings.database_url:
        monkeypatch.setenv("OMNIDESK_DATABASE_URL", desk.settings.database_url)
    capsys.readouterr()
    assert main(["rules", "check", str(desk.settings.rules_file)]) == 0
    out = capsys.readouterr().out
    assert "cy@example.com is not an agent in the store" in out
    assert "Bo@Example.com is an inactive agent" in out
    assert "3 warnings about agents" in out
    assert httpx.get(desk.base_url + "/healthz").status_code == 200


# --- the OpenAPI description holds ------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def admin_app(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[tuple[Any, str]]:
    """The HTTP app on a fresh store, with an admin's token (in process: the property run makes
    hundreds of requests, and the server is tested over HTTP above)."""
    from omnidesk.app import App
    from omnidesk.web import create_web_app
    from tickets.agents import add_agent, issue_token

    database = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    app = App(make_settings(**database), load_rules=False)
    app.migrate()
    with app.db.write() as session:
        add_agent(session, name="Root", email="root@example.com", role="admin")
        add_agent(session, name="Ana", email="ana@example.com", role="agent")
        token = issue_token(session, "root@example.com").token
    yield create_web_app(app), token
    app.close()


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_agents_api_keeps_to_its_openapi_description(admin_app: tuple[Any, str], mode: str) -> None:
    """Generated requests to every agents operation, schema-valid ones and not: every answer is
    one the description documents, in its shape (status, body schema, Allow header), and a
    schema-valid request is not refused. (Each operation's strategy is driven here directly:
    schemathesis's own pytest fixture loader does not run under pytest 9.)"""
    import schemathesis
    from schemathesis.core.result import Ok
    from schemathesis.generation import GenerationMode

    app, token = admin_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(tag="agents")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    assert len(operations) == 9
    for operation in operations:
        @hypothesis.given(case=operation.as_strategy(GenerationMode(mode)))
        @hypothesis.settings(max_examples=10, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def check(case: Any) -> None:
            # The test sends a valid token itself: a negative case whose invalid part is a missing
            # Authorization header would be made valid by it (and then rightly accepted).
            if mode == "negative" and "Authorization" not in (case.headers or {}):
                hypothesis.assume(False)
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

        check()
