"""A whole mailbox imported over IMAP from a real Dovecot, in random order: one ticket per
conversation, every reply on its ticket, no message twice, poison in quarantine, every message
flagged on the server once it is stored."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.corpus import generate_corpus
from config.settings import Settings
from tests.peers.dovecot import DovecotServer
from tests.pipeline import Pipeline, assert_threaded_like
from tests.test_threading_order import POISON
from tickets.models import IntakeRow


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    server = DovecotServer().start()
    yield server
    server.stop()


def _import(dovecot: DovecotServer, make_settings: Callable[..., Settings], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    user, password = f"support-{n}@acme.test", "secret"
    dovecot.add_user(user, password)
    corpus = generate_corpus(n, seed=21)
    mails = [m.raw for m in corpus.shuffled(8)] + list(POISON)
    random.Random(9).shuffle(mails)
    dovecot.append(user, mails)

    channels = tmp_path / "channels.yaml"
    channels.write_text(
        "imap:\n"
        "  - name: support\n"
        "    host: 127.0.0.1\n"
        f"    port: {dovecot.port}\n"
        "    security: none\n"
        f"    username: {user}\n"
        "    password_env: OMNIDESK_IMAP_SUPPORT_PASSWORD\n"
        "    address: support@acme.test\n"
        "    poll_seconds: 1\n"
    )
    monkeypatch.setenv("OMNIDESK_IMAP_SUPPORT_PASSWORD", password)
    settings = make_settings(channels_file=channels, smtp_domains=("acme.test",), support_address="support@acme.test")
    p = Pipeline(settings).start(("worker", "sweeper", "imap"))
    try:
        def imported() -> bool:
            with p.app.db.read() as session:
                return session.query(IntakeRow).count() >= len(mails)

        p.wait_until(imported, timeout=240, what="the whole mailbox in the intake log")
        p.wait_routed(timeout=240)
        assert_threaded_like(p.app, corpus.manifest(), expected_messages=n)
        with p.app.db.read() as session:
            assert session.query(IntakeRow).filter(IntakeRow.state == "quarantined").count() == len(POISON)
        flags = dovecot.flags(user)
        assert len(flags) == len(mails)
        assert all(b"\\Seen" in f or "\\Seen" in {str(x) for x in f} for f in flags.values())
    finally:
        p.stop()


def test_mailbox_of_600_imports_threaded(
    dovecot: DovecotServer, make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(dovecot, make_settings, tmp_path, monkeypatch, 600)


@pytest.mark.slow
def test_mailbox_of_2000_imports_threaded(
    dovecot: DovecotServer, make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _import(dovecot, make_settings, tmp_path, monkeypatch, 2000)
