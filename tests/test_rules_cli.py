"""`omnidesk route explain` and `omnidesk rules replay` on a store filled through the real email path
(SMTP intake → worker → router), driven through `omnidesk.cli.main` as an admin would."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import Settings
from omnidesk.cli import main
from tests.peers.smtp_sink import SmtpSink
from tests.pipeline import Pipeline, make_mail

RULES = Path(__file__).resolve().parents[1] / "config" / "routing.yaml"
REFUND_RULE = "    then: {queue: billing, category: refund, sla: standard}"


@dataclass
class Store:
    """A data dir routed through the pipeline, and what was sent into it."""

    data_dir: Path
    refs: dict[str, str]  # label → ticket ref
    mails: dict[str, bytes]  # label → raw message as sent

    def copy(self, target: Path) -> Path:
        """A private copy of the store (for tests that change rows); returns its data dir."""
        (target / "blobs").mkdir(parents=True)
        source = sqlite3.connect(self.data_dir / "omnidesk.db")
        copy = sqlite3.connect(target / "omnidesk.db")
        source.backup(copy)
        source.close()
        copy.close()
        return target


# Six new tickets (three of them about refunds) and one follow-up that also says "refund": replay
# must count new-ticket messages only.
_MAILS: dict[str, dict[str, Any]] = {
    "refund": {
        "subject": "Refund please",
        "body": "Please refund my last order, I changed my mind.",
    },
    "damaged": {
        "subject": "Parcel arrived damaged",
        "body": "The box was crushed and the vase inside is in pieces.",
    },
    "where": {"subject": "Order 1234", "body": "Hello, where is my order? It has been two weeks."},
    "general": {
        "sender": "Cy <cy@other.test>",
        "subject": "Opening hours",
        "body": "Are you open on public holidays? Thanks a lot for the information.",
    },
    "chargeback": {
        "sender": "Bo <bo@other.test>",
        "subject": "Chargeback",
        "body": "My bank will start a chargeback unless this is fixed today.",
    },
    "vip": {
        "sender": "Dana Ceo <ceo@bigco.example>",
        "subject": "Invoice question",
        "body": "Our refund for invoice 42 has not arrived yet, please check.",
    },
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("rules-cli")
    sink = SmtpSink().start()
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in __import__("os").environ if k.startswith("OMNIDESK_")]:
            mp.delenv(key)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            data_dir=root / "var",
            smtp_domains=("example.com",),
            support_address="support@example.com",
            sweep_grace_seconds=1.0,
            sweep_interval_seconds=0.5,
            rules_file=RULES,
            outbound_smtp_url=SecretStr(sink.url),
        )
        pipeline = Pipeline(settings).start()
        try:
            mails = {label: make_mail(**fields) for label, fields in _MAILS.items()}
            for mail in mails.values():
                pipeline.send(mail)
            pipeline.wait_routed()
            by_subject = {t["subject"]: t["ref"] for t in pipeline.tickets()}
            refs = {label: by_subject[mail["Subject"]] for label, mail in mails.items()}
            reply = make_mail(
                subject="Re: Refund please",
                body="Any news about my refund?",
                in_reply_to=mails["refund"]["Message-ID"],
            )
            pipeline.send(reply)
            pipeline.wait_until(
                lambda: pipeline.ticket(refs["refund"])["message_count"] >= 3, what="the reply"
            )
            pipeline.wait_routed()
            assert len(pipeline.tickets()) == 6
        finally:
            pipeline.stop()
            sink.stop()
    raw = {label: bytes(mail) for label, mail in mails.items()}
    yield Store(root / "var", refs, raw)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `omnidesk ARGS` against a data dir; returns (status, stdout, stderr)."""

    def run(data_dir: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        monkeypatch.setenv("OMNIDESK_DATA_DIR", str(data_dir))
        monkeypatch.setenv("OMNIDESK_RULES_FILE", str(RULES))
        monkeypatch.setenv("OMNIDESK_SMTP_DOMAINS", "example.com")
        if stdin is not None:
            import io

            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _candidate(tmp_path: Path) -> Path:
    """The default rules with refunds moved to a new `refunds` queue."""
    text = RULES.read_text(encoding="utf-8")
    assert REFUND_RULE in text
    text = text.replace(REFUND_RULE, "    then: {queue: refunds, category: refund, sla: standard}")
    text = text.replace("queues:\n", "queues:\n  - id: refunds\n    name: Refunds\n", 1)
    return _write(tmp_path / "candidate.yaml", text)


def _snapshot(data_dir: Path) -> dict[str, Any]:
    """Row counts of every table and every file under the data dir."""
    db = sqlite3.connect(data_dir / "omnidesk.db")
    try:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        counts["max(ticket id)"] = db.execute("SELECT max(id) FROM tickets").fetchone()[0]
    finally:
        db.close()
    files = sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith("omnidesk.db")
    )
    return {"rows": counts, "files": files}


# --- route explain ---------------------------------------------------------------------------------
def test_explain_eml_prints_facts_rules_and_final_queue(
    store: Store, cli: Any, tmp_path: Path
) -> None:
    mail = make_mail(subject="Money back?", body="I would like a refund for order 77, thanks.")
    status, out, err = cli(
        store.data_dir, "route", "explain", str(_write(tmp_path / "m.eml", bytes(mail)))
    )
    assert status == 0, err
    assert "Thread:   new ticket" in out
    assert "contact history from the store" in out
    # Ana has three tickets in the store already: the facts come from there.
    assert re.search(r"open_tickets:\s+3", out)
    assert re.search(r"\[APPLIED\] Refunds and invoices", out)
    assert re.search(r"\[  no   \] Damaged deliveries", out)
    assert "failed rules[3].when.any" in out  # which condition failed
    decision = out.split("Decision:\n", 1)[1]
    assert "queue=billing" in decision and "category=refund" in decision
    assert "Acknowledgement: would be sent" in out


def test_explain_json_has_per_rule_results(store: Store, cli: Any, tmp_path: Path) -> None:
    mail = make_mail(
        subject="Where is it", body="Hello, where is my order? Tracking number please."
    )
    status, out, _ = cli(
        store.data_dir, "route", "explain", "--json", str(_write(tmp_path / "m.eml", bytes(mail)))
    )
    assert status == 0
    data = json.loads(out)
    assert set(data) == {
        "input",
        "store",
        "facts_source",
        "evaluated_at",
        "thread",
        "already_stored",
        "acknowledgement",
        "rules_file",
        "event",
        "message",
        "facts",
        "rules",
        "applied",
        "actions",
    }
    assert data["event"] == "new_ticket" and data["thread"]["follow_up"] is False
    assert data["facts"]["customer"]["open_tickets"] == 3 and data["facts"]["language"] == "en"
    rules = {r["name"]: r for r in data["rules"]}
    assert len(data["rules"]) == 7  # the new_ticket rules of the file, all of them
    assert rules["Where is my order"]["matched"] and rules["Where is my order"]["applied"]
    assert rules["Obvious spam"]["matched"] is False
    assert rules["Obvious spam"]["failed"]["path"] == "rules[0].when.subject.matches"
    assert rules["Refunds and invoices"]["applied"] is False
    assert (
        data["actions"]["queue"] == "logistics" and data["actions"]["category"] == "delivery-status"
    )
    assert data["acknowledgement"]["send"] is True


def test_explain_reads_standard_input(store: Store, cli: Any) -> None:
    status, out, _ = cli(
        store.data_dir, "route", "explain", "-", "--json", stdin=store.mails["chargeback"]
    )
    assert status == 0
    data = json.loads(out)
    assert data["input"]["name"] == "standard input"
    # The very message that opened a ticket: its own Message-ID leads back to that ticket.
    assert data["thread"]["follow_up"] is True
    assert data["thread"]["match"]["ticket_ref"] == store.refs["chargeback"]
    assert data["already_stored"]["ticket_ref"] == store.refs["chargeback"]


def test_explain_of_a_reply_is_a_follow_up_with_follow_up_rules(
    store: Store, cli: Any, tmp_path: Path
) -> None:
    parent = store.mails["damaged"].split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0].decode().strip()
    reply = make_mail(
        subject="Re: Parcel arrived damaged", body="Here is a photo.", in_reply_to=parent
    )
    path = _write(tmp_path / "reply.eml", bytes(reply))
    status, out, _ = cli(store.data_dir, "route", "explain", str(path))
    assert status == 0
    assert f"follow-up of {store.refs['damaged']} (status new), via in-reply-to" in out
    assert "(event: follow_up)" in out
    assert re.search(r"\[  no   \] Reopen escalation", out)
    assert "failed rules[7].when.ticket.status: expected equals 'resolved', got 'new'" in out
    status, out, _ = cli(store.data_dir, "route", "explain", "--json", str(path))
    data = json.loads(out)
    assert data["event"] == "follow_up" and [r["name"] for r in data["rules"]] == [
        "Reopen escalation"
    ]
    assert (
        data["facts"]["ticket"]["ref"] == store.refs["damaged"] and data["acknowledgement"] is None
    )


def test_explain_ticket_number_in_subject_follows_the_router(
    store: Store, cli: Any, tmp_path: Path
) -> None:
    ref = store.refs["chargeback"]  # Bo's ticket
    own = make_mail(sender="Bo <bo@other.test>", subject=f"More on [{ref}]", body="One more thing.")
    status, out, _ = cli(
        store.data_dir, "route", "explain", "--json", str(_write(tmp_path / "o.eml", bytes(own)))
    )
    assert status == 0
    data = json.loads(out)
    assert data["thread"]["match"] == {"ticket_ref": ref, "via": "subject-token", "key": ref}
    assert data["event"] == "follow_up"

    stranger = make_mail(sender="eve@elsewhere.test", subject=f"Re: [{ref}]", body="Let me in.")
    status, out, _ = cli(
        store.data_dir, "route", "explain", str(_write(tmp_path / "s.eml", bytes(stranger)))
    )
    assert status == 0
    assert f"new ticket: it names {ref}, but the sender is not on that ticket" in out
    assert "(event: new_ticket)" in out


def test_explain_ticket_uses_the_stored_facts(store: Store, cli: Any, tmp_path: Path) -> None:
    status, out, _ = cli(
        store.data_dir, "route", "explain", "--ticket", store.refs["vip"], "--json"
    )
    assert status == 0
    data = json.loads(out)
    stored = json.loads(cli(store.data_dir, "tickets", "show", store.refs["vip"], "--json")[1])
    assert data["facts"] == {**stored["facts"]}  # as recorded at routing time, `now` included
    assert data["facts"]["customer"]["tier"] == "vip"
    assert data["input"]["subject"] == "Invoice question"
    assert data["actions"]["queue"] == "billing" and data["actions"]["priority"] == "high"
    assert data["changed_since_routed"] == []

    # Proof that the facts are read from the ticket, not gathered again: change them in a copy.
    data_dir = store.copy(tmp_path / "var")
    db = sqlite3.connect(data_dir / "omnidesk.db")
    facts = json.loads(
        db.execute("SELECT facts FROM tickets WHERE ref = ?", (store.refs["general"],)).fetchone()[
            0
        ]
    )
    facts["customer"]["tier"] = "vip"
    db.execute(
        "UPDATE tickets SET facts = ? WHERE ref = ?", (json.dumps(facts), store.refs["general"])
    )
    db.commit()
    db.close()
    status, out, _ = cli(data_dir, "route", "explain", "--ticket", store.refs["general"].lower())
    assert status == 0
    assert f"Explaining {store.refs['general']}: 'Opening hours'" in out
    assert "Facts:    as stored when it was routed" in out
    assert re.search(r"\[APPLIED\] VIP customers", out)
    assert (
        "Stored decision differs (when routed → under these rules): priority normal → high" in out
    )


def test_explain_writes_nothing(store: Store, cli: Any, tmp_path: Path) -> None:
    attachment = make_mail(
        subject="Invoice attached", body="See the attached invoice, I need a refund."
    )
    attachment.add_attachment(
        b"%PDF-1.4 not really", maintype="application", subtype="pdf", filename="inv.pdf"
    )
    path = _write(tmp_path / "a.eml", bytes(attachment))
    parent = store.mails["refund"].split(b"Message-ID: ", 1)[1].split(b"\n", 1)[0].decode().strip()
    reply = _write(
        tmp_path / "r.eml", bytes(make_mail(subject="Re: x", body="more", in_reply_to=parent))
    )
    before = _snapshot(store.data_dir)
    for args in (
        (str(path),),
        (str(reply),),
        ("--json", str(path)),
        ("--ticket", store.refs["refund"]),
    ):
        status, _, err = cli(store.data_dir, "route", "explain", *args)
        assert status == 0, err
    assert _snapshot(store.data_dir) == before

    # Without a store: directory facts only, and not even the data dir is created.
    empty = tmp_path / "nothing-here"
    status, out, _ = cli(empty, "route", "explain", str(path))
    assert status == 0 and "no store at" in out and "not checked" in out
    assert not empty.exists()


def test_explain_usage_errors(store: Store, cli: Any, tmp_path: Path) -> None:
    status, _, err = cli(store.data_dir, "route", "explain")
    assert status == 2 and "--ticket REF" in err
    status, _, err = cli(store.data_dir, "route", "explain", "--ticket", "OD-99999")
    assert status == 1 and "no ticket OD-99999" in err
    status, _, err = cli(store.data_dir, "route", "explain", str(tmp_path / "missing.eml"))
    assert status == 1 and "cannot read" in err
    broken = _write(tmp_path / "broken.yaml", "version: 1\nqueus: []\n")
    status, _, err = cli(
        store.data_dir, "route", "explain", "--rules", str(broken), "--ticket", store.refs["refund"]
    )
    assert status == 1 and re.search(r"broken\.yaml:2:1: ", err)


# --- rules replay ----------------------------------------------------------------------------------
def test_replay_reports_the_moved_refunds(store: Store, cli: Any, tmp_path: Path) -> None:
    candidate = _candidate(tmp_path)
    status, out, err = cli(store.data_dir, "rules", "replay", "--rules", str(candidate))
    assert status == 0, err
    assert "Replayed 6 messages" in out
    assert "3 decisions change (50.0 %)." in out
    assert re.search(r"^  billing → refunds\s+3\s", out, re.MULTILINE)
    assert "→ refunds" in out and "logistics →" not in out
    samples = out.split("Sample messages per move", 1)[1]
    for label in ("refund", "chargeback", "vip"):
        assert re.search(rf"{store.refs[label]}\s+{re.escape(_MAILS[label]['subject'])}", samples)
    assert re.search(
        r"^Replayed 6 new-ticket messages received since .* \(30d\) in \d+\.\d\d s",
        out,
        re.MULTILINE,
    )

    status, out, err = cli(
        store.data_dir, "rules", "replay", "--rules", str(candidate), "--json", "--samples", "1"
    )
    assert status == 0
    data = json.loads(out)
    assert data["messages"] == 6 and data["changed"] == 3
    assert [(m["from"], m["to"], m["count"]) for m in data["moves"]] == [("billing", "refunds", 3)]
    assert len(data["moves"][0]["sample_messages"]) == 1
    assert data["moves"][0]["sample_messages"][0]["ref"] in {
        store.refs[k] for k in ("refund", "chargeback", "vip")
    }
    assert "Replayed 6 new-ticket messages" in err

    # The rules in force against themselves: nothing changes.
    status, out, _ = cli(store.data_dir, "rules", "replay", "--rules", str(RULES))
    assert status == 0 and "0 decisions change" in out


def test_replay_with_a_broken_candidate_lists_every_error(
    store: Store, cli: Any, tmp_path: Path
) -> None:
    broken = _write(
        tmp_path / "broken.yaml",
        RULES.read_text(encoding="utf-8")
        .replace(REFUND_RULE, "    then: {queue: refundz, categroy: refund}")
        .replace("when: {customer.tier: vip}", "when: {customer.tier: {equalz: vip}}"),
    )
    before = _snapshot(store.data_dir)
    status, out, err = cli(store.data_dir, "rules", "replay", "--rules", str(broken))
    assert status == 1 and out == ""
    errors = re.findall(r"^.*broken\.yaml:(\d+):(\d+): (.*)$", err, re.MULTILINE)
    assert len(errors) == 3, err
    assert any("refundz" in e[2] for e in errors)
    assert any("categroy" in e[2] for e in errors) and any("equalz" in e[2] for e in errors)
    assert _snapshot(store.data_dir) == before


def test_replay_since_excludes_older_messages(store: Store, cli: Any, tmp_path: Path) -> None:
    data_dir = store.copy(tmp_path / "var")
    old = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(data_dir / "omnidesk.db")
    for label in ("refund", "chargeback"):  # two of the three refunds, and the refund's follow-up
        db.execute(
            "UPDATE intake SET received_at = ? WHERE ticket_id = (SELECT id FROM tickets WHERE ref = ?)",
            (old, store.refs[label]),
        )
    db.commit()
    db.close()
    candidate = _candidate(tmp_path)

    def replayed(*extra: str) -> dict[str, Any]:
        status, out, err = cli(
            data_dir, "rules", "replay", "--rules", str(candidate), "--json", *extra
        )
        assert status == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    recent = replayed()
    assert (recent["messages"], recent["changed"], recent["window"]) == (4, 1, "30d")
    assert recent["moves"][0]["samples"] == [store.refs["vip"]]
    assert (replayed("--since", "60d")["messages"], replayed("--since", "60d")["changed"]) == (6, 3)
    assert replayed("--since", "all")["changed"] == 3
    assert replayed("--since", "90m")["messages"] == 4
    with pytest.raises(SystemExit) as exited:
        cli(data_dir, "rules", "replay", "--rules", str(candidate), "--since", "30x")
    assert exited.value.code == 2


def test_replay_window_parsing() -> None:
    from omnidesk.cli_routing import parse_window

    assert parse_window("7d") == timedelta(days=7)
    assert parse_window("24h") == timedelta(hours=24)
    assert parse_window("90m") == timedelta(minutes=90)
    assert parse_window(" 2W ") == timedelta(weeks=2)
    assert parse_window("all") is None
    for bad in ("30", "d", "3x", "-1d", "0d", "1.5h"):
        with pytest.raises(Exception, match="not a duration"):
            parse_window(bad)


def test_replay_without_a_store_says_so(cli: Any, tmp_path: Path) -> None:
    status, _, err = cli(tmp_path / "nothing", "rules", "replay", "--rules", str(RULES))
    assert status == 1 and "no store at" in err
    assert not (tmp_path / "nothing").exists()


@pytest.mark.postgres
def test_explain_and_replay_on_postgres(
    postgres_url: str,
    make_settings: Any,
    smtp_sink: SmtpSink,
    cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The same queries on PostgreSQL: JSONB `->>`, casts to text, a server-side cursor."""
    pipeline = Pipeline(
        make_settings(outbound_smtp_url=smtp_sink.url, database_url=postgres_url)
    ).start()
    try:
        refund = make_mail(subject="Refund please", body="Please refund my last order.")
        for mail in (
            refund,
            make_mail(sender="bo@other.test", subject="Chargeback", body="A chargeback is coming."),
            make_mail(sender="cy@other.test", subject="Hello", body="Are you open on Sunday?"),
        ):
            pipeline.send(mail)
        pipeline.wait_routed()
        pipeline.wait_until(lambda: len(pipeline.tickets()) == 3, what="three tickets")
        pipeline.send(
            make_mail(subject="Re: Refund please", body="refund?", in_reply_to=refund["Message-ID"])
        )
        pipeline.wait_routed()
        ref = {t["subject"]: t["ref"] for t in pipeline.tickets()}["Refund please"]
    finally:
        pipeline.stop()
    monkeypatch.setenv("OMNIDESK_DATABASE_URL", postgres_url)
    status, out, err = cli(
        tmp_path / "var", "rules", "replay", "--rules", str(_candidate(tmp_path)), "--json"
    )
    assert status == 0, err
    data = json.loads(out)
    assert (data["messages"], data["changed"]) == (3, 2)
    assert data["moves"][0]["from"] == "billing" and data["moves"][0]["to"] == "refunds"
    status, out, err = cli(tmp_path / "var", "route", "explain", "--ticket", ref, "--json")
    assert status == 0, err
    assert json.loads(out)["actions"]["queue"] == "billing"
    status, out, err = cli(
        tmp_path / "var", "route", "explain", str(_write(tmp_path / "m.eml", bytes(refund)))
    )
    assert status == 0, err
    assert "this very message is in the store already" in out and f"on {ref}" in out
