"""IMAP intake against a real Dovecot: import, IDLE, restarts, UIDVALIDITY resync, poison, leases.

One Dovecot serves the module; every test works in mailboxes of its own users. Pollers run with
short ticks, leases and backoffs (constructor arguments), so no test sleeps its way to a result.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import Settings
from intake.channels import load_channels
from intake.email.imap.settings import ImapMailbox
from intake.email.imap import Checkpoints, ImapPoller, Lease, LeaseLost, start_pollers
from omnidesk.app import App
from tests.peers import missing
from tests.peers.dovecot import DovecotServer
from tests.pipeline import Pipeline, make_mail
from tickets.models import ChannelLease, IntakeRow

pytestmark = pytest.mark.dovecot

SEEN = "\\Seen"

FAST: dict[str, Any] = {
    "tick": 0.05,
    "lease_seconds": 5.0,
    "backoff_base": 0.05,
    "backoff_cap": 0.3,
    "poll_seconds": 0.2,
    "idle_seconds": 30.0,
}


# --- fixtures and helpers ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    server = DovecotServer(tls=True).start()
    yield server
    server.stop()


class Account:
    def __init__(self, server: DovecotServer) -> None:
        self.server = server
        self.user = f"support-{uuid.uuid4().hex[:10]}@example.test"
        self.password = uuid.uuid4().hex
        server.add_user(self.user, self.password)

    def mailbox(self, name: str = "support", **overrides: Any) -> ImapMailbox:
        values: dict[str, Any] = {
            "name": name,
            "host": "127.0.0.1",
            "port": self.server.port,
            "security": "none",
            "username": self.user,
            "password_env": "OMNIDESK_TEST_IMAP_PASSWORD",
            "address": "support@example.com",
        }
        values.update(overrides)
        return ImapMailbox(**values)

    def deliver(self, *mails: Any, folder: str = "INBOX", flags: tuple[str, ...] = (),
                when: datetime | None = None) -> list[int]:
        raws = [m if isinstance(m, bytes) else bytes(m) for m in mails]
        return self.server.append(self.user, raws, folder=folder, flags=flags, when=when)

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        return self.server.flags(self.user, folder)

    def uids(self, folder: str = "INBOX") -> list[int]:
        return self.server.folder_uids(self.user, folder)


@pytest.fixture
def account(dovecot: DovecotServer) -> Account:
    return Account(dovecot)


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Iterator[App]:
    """The intake side only (no worker): enough to see what the intake log holds."""
    application = App(make_settings(), load_rules=False)
    application.migrate()
    yield application
    application.close()


def make_poller(app: App, box: ImapMailbox, password: str, *, accept: Any = None, **options: Any) -> ImapPoller:
    values = {**FAST, **options}
    return ImapPoller(box, password=password, accept=accept or app.accept_email, db=app.db, **values)


@contextmanager
def running(*pollers: ImapPoller) -> Iterator[None]:
    threads = [threading.Thread(target=p.run, name=f"test-{p.name}", daemon=True) for p in pollers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for poller in pollers:
            poller.stop()
        for thread in threads:
            thread.join(timeout=10)
            assert not thread.is_alive(), f"poller thread {thread.name} did not stop"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def intake_rows(app: App) -> list[IntakeRow]:
    with app.db.read() as session:
        rows = list(session.execute(select(IntakeRow).order_by(IntakeRow.id)).scalars())
        session.expunge_all()  # keep them readable after the session's rollback
        return rows


def wait_rows(app: App, count: int, timeout: float = 10.0) -> list[IntakeRow]:
    wait_until(lambda: len(intake_rows(app)) >= count, timeout, f"{count} intake rows")
    return intake_rows(app)


def subjects(app: App) -> list[str]:
    return sorted((row.envelope or {}).get("subject", "") for row in intake_rows(app))


def mails(count: int, prefix: str = "Mail") -> list[bytes]:
    return [bytes(make_mail(subject=f"{prefix} {n}", body=f"Body of {prefix.lower()} {n}.")) for n in range(count)]


# --- import --------------------------------------------------------------------------------------------
def test_mail_in_the_inbox_becomes_a_ticket_and_is_flagged_seen(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    pipeline = Pipeline(make_settings()).start(("worker", "sweeper"))
    try:
        original = make_mail(subject="Parcel arrived damaged")
        reply = make_mail(subject="Re: Parcel arrived damaged", body="Photo attached.",
                          in_reply_to=original["Message-ID"], references=[original["Message-ID"]])
        delivered_at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
        uids = account.deliver(original, when=delivered_at)
        uids += account.deliver(reply)
        poller = make_poller(pipeline.app, account.mailbox(), account.password)
        with running(poller):
            pipeline.wait_for_messages(2)
            pipeline.wait_routed()
            wait_until(lambda: poller.stats.acknowledged == 2, what="both flagged")
        tickets = pipeline.tickets()
        assert len(tickets) == 1
        assert tickets[0]["subject"] == "Parcel arrived damaged"
        assert tickets[0]["contact"] == "ana@customer.test"
        rows = intake_rows(pipeline.app)
        assert [r.source for r in rows] == ["imap:support", "imap:support"]
        assert rows[0].received_at == delivered_at  # INTERNALDATE: when the mailbox received it
        assert rows[0].envelope is not None and [r["address"] for r in rows[0].envelope["recipients"]] == ["support@example.com"]
        assert all(SEEN in f for f in account.flags().values())
        assert Checkpoints(pipeline.app.db).get("support", "INBOX").last_uid == uids[-1]  # type: ignore[union-attr]
    finally:
        pipeline.stop()


def test_idle_imports_a_new_mail_within_seconds(app: App, account: Account) -> None:
    poller = make_poller(app, account.mailbox(), account.password, poll_seconds=600)
    with running(poller):
        wait_until(poller.waiting.is_set, what="the poller to idle")
        started = time.monotonic()
        account.deliver(make_mail(subject="Arrived while idling"))
        wait_rows(app, 1, timeout=5)
        took = time.monotonic() - started
    assert subjects(app) == ["Arrived while idling"]
    assert took < 5  # poll_seconds is 600: only IDLE can have woken it


def test_mail_delivered_just_before_idle_begins_is_not_left_waiting(app: App, account: Account) -> None:
    poller = make_poller(app, account.mailbox(), account.password, poll_seconds=600, idle_seconds=60)
    original = ImapPoller._idle
    delivered = threading.Event()

    def deliver_then_idle(self: ImapPoller, client: Any) -> None:
        if not delivered.is_set():
            delivered.set()
            account.deliver(*mails(1, "Between SELECT and IDLE"))  # after the sync looked
        original(self, client)

    poller._idle = deliver_then_idle.__get__(poller)  # type: ignore[method-assign]
    with running(poller):
        wait_rows(app, 1, timeout=5)  # not after idle_seconds (60)
    assert subjects(app) == ["Between SELECT and IDLE 0"]


def test_idle_is_reissued_and_each_round_looks_at_the_folder(app: App, account: Account) -> None:
    poller = make_poller(app, account.mailbox(), account.password, poll_seconds=600, idle_seconds=0.2)
    with running(poller):
        wait_until(lambda: poller.stats.syncs >= 4, timeout=5, what="IDLE re-issued")
        assert poller.stats.failures == 0 and not poller.stats.errors
        account.deliver(*mails(1))
        wait_rows(app, 1, timeout=5)


def test_polling_when_idle_is_off_and_move_falls_back_to_copy_and_expunge(app: App, account: Account) -> None:
    box = account.mailbox(move_to="Processed")
    poller = make_poller(app, box, account.password, use_idle=False, use_move=False, poll_seconds=0.1)
    account.deliver(*mails(2))
    with running(poller):
        wait_rows(app, 2)
        wait_until(lambda: poller.waiting.is_set() and poller.stats.acknowledged == 2, what="first poll done")
        account.deliver(*mails(1, "Later"))
        wait_rows(app, 3)
        wait_until(lambda: poller.stats.acknowledged == 3, what="moved")
    assert account.uids("INBOX") == []  # copied, \Deleted and expunged
    moved = account.flags("Processed")
    assert len(moved) == 3 and all(SEEN in f for f in moved.values())


def test_move_to_moves_imported_mail_out_of_the_folder(app: App, account: Account) -> None:
    account.deliver(*mails(3))
    poller = make_poller(app, account.mailbox(move_to="Processed"), account.password)
    with running(poller):
        wait_rows(app, 3)
        wait_until(lambda: poller.stats.acknowledged == 3, what="moved")
    assert account.uids("INBOX") == []
    assert len(account.uids("Processed")) == 3  # created by the poller
    assert subjects(app) == ["Mail 0", "Mail 1", "Mail 2"]


def test_many_messages_are_fetched_in_batches(app: App, account: Account) -> None:
    account.deliver(*mails(120))
    fetches: list[int] = []
    poller = make_poller(app, account.mailbox(), account.password, batch_size=50, max_batch_bytes=20_000)

    original = ImapPoller._import_batch

    def spy(self: ImapPoller, client: Any, uids: list[int], uidvalidity: int) -> None:
        fetches.append(len(uids))
        original(self, client, uids, uidvalidity)

    poller._import_batch = spy.__get__(poller)  # type: ignore[method-assign]
    with running(poller):
        wait_rows(app, 120, timeout=30)
        wait_until(lambda: poller.stats.acknowledged == 120, what="all flagged")
    assert sum(fetches) == 120
    assert max(fetches) <= 50 and len(fetches) >= 3
    assert len({r.external_id for r in intake_rows(app)}) == 120


# --- what is imported, and only once --------------------------------------------------------------------
def test_restart_mid_batch_imports_every_message_exactly_once(app: App, account: Account) -> None:
    account.deliver(*mails(12))
    calls: list[int] = []
    first: ImapPoller

    def accept_then_stop(raw: bytes, recipients: list[str], received_at: datetime, *, source: str) -> Any:
        result = app.accept_email(raw, recipients, received_at, source=source)
        calls.append(1)
        if len(calls) == 7:
            first.stop()  # the process is told to stop in the middle of a batch
        return result

    first = make_poller(app, account.mailbox(), account.password, accept=accept_then_stop, batch_size=5)
    with running(first):
        wait_until(lambda: first.stopping, what="the stop")
    assert len(intake_rows(app)) == 7
    flags = account.flags()
    assert sum(1 for f in flags.values() if SEEN in f) == 7  # what was stored was acknowledged
    assert Checkpoints(app.db).get("support", "INBOX").last_uid == sorted(flags)[6]  # type: ignore[union-attr]

    second = make_poller(app, account.mailbox(), account.password, batch_size=5)
    with running(second):
        wait_rows(app, 12)
        wait_until(lambda: second.stats.acknowledged == 5, what="the rest flagged")
    assert second.stats.duplicates == 0  # nothing fetched twice
    assert len({r.external_id for r in intake_rows(app)}) == len(intake_rows(app)) == 12
    assert all(SEEN in f for f in account.flags().values())


def test_crash_between_commit_and_flag_gives_a_duplicate_not_a_second_ticket(app: App, account: Account) -> None:
    account.deliver(*mails(5))
    crashed = threading.Event()

    def accept_and_crash_once(raw: bytes, recipients: list[str], received_at: datetime, *, source: str) -> Any:
        result = app.accept_email(raw, recipients, received_at, source=source)
        if len(intake_rows(app)) == 3 and not crashed.is_set():
            crashed.set()
            raise RuntimeError("killed after the commit, before the flag")
        return result

    poller = make_poller(app, account.mailbox(), account.password, accept=accept_and_crash_once)
    with running(poller):
        wait_until(lambda: poller.stats.acknowledged == 5, what="all flagged")
    assert len(intake_rows(app)) == 5
    assert poller.stats.duplicates == 1  # the third mail came again and was dropped by the log
    assert all(SEEN in f for f in account.flags().values())


def test_nothing_is_imported_twice_after_a_restart(app: App, account: Account) -> None:
    account.deliver(*mails(3))
    first = make_poller(app, account.mailbox(), account.password)
    with running(first):
        wait_until(lambda: first.stats.acknowledged == 3, what="first import")
    with account.server.client(account.user) as imap:  # someone marks a message unread again
        imap.select_folder("INBOX")
        imap.remove_flags(imap.search("ALL")[:1], [SEEN])
    second = make_poller(app, account.mailbox(), account.password)
    with running(second):
        wait_until(lambda: second.stats.syncs >= 1, what="a sync")
        account.deliver(*mails(1, "New"))
        wait_rows(app, 4)
    assert second.stats.duplicates == 0 and second.stats.accepted == 1


def test_a_message_read_by_a_person_first_is_still_imported(app: App, account: Account) -> None:
    """The checkpoint decides what is new, never \\Seen: webmail cannot make a message vanish."""
    account.deliver(*mails(1, "Read in webmail"), flags=(SEEN,))
    account.deliver(*mails(1, "Unread"))
    poller = make_poller(app, account.mailbox(), account.password)
    with running(poller):
        wait_rows(app, 2)
    assert subjects(app) == ["Read in webmail 0", "Unread 0"]


def test_import_since_skips_older_mail(app: App, account: Account) -> None:
    account.deliver(*mails(1, "Old"), when=datetime(2020, 1, 1, tzinfo=UTC))
    account.deliver(*mails(1, "Recent"))
    poller = make_poller(app, account.mailbox(import_since=datetime(2024, 1, 1).date()), account.password)
    with running(poller):
        wait_rows(app, 1)
        wait_until(lambda: poller.stats.syncs >= 1, what="a sync")
    assert subjects(app) == ["Recent 0"]


def test_uidvalidity_change_resyncs_without_duplicates_or_gaps(app: App, account: Account) -> None:
    folder = "Support"
    batch = mails(3, "Before")
    account.deliver(*batch, folder=folder)
    box = account.mailbox(folder=folder)
    first = make_poller(app, box, account.password)
    with running(first):
        wait_until(lambda: first.stats.acknowledged == 3, what="first import")
    old = Checkpoints(app.db).get("support", folder)
    assert old is not None and old.last_uid == 3

    # The folder is recreated (a restore, a server migration): new UIDVALIDITY, UIDs from 1 again.
    with account.server.client(account.user) as imap:
        imap.delete_folder(folder)
        imap.create_folder(folder)
    account.deliver(*batch, folder=folder)  # the restored old mail
    account.deliver(*mails(2, "After"), folder=folder)  # and new mail
    assert account.server.uidvalidity(account.user, folder) != old.uidvalidity

    second = make_poller(app, box, account.password)
    with running(second):
        wait_until(lambda: second.stats.acknowledged == 5, what="resync")
    assert second.stats.resyncs == 1
    assert second.stats.duplicates == 3 and second.stats.accepted == 2
    assert subjects(app) == ["After 0", "After 1", "Before 0", "Before 1", "Before 2"]
    new = Checkpoints(app.db).get("support", folder)
    assert new is not None and new.uidvalidity != old.uidvalidity and new.last_uid == 5


def test_poisoned_message_is_quarantined_and_does_not_block_the_rest(
    make_settings: Callable[..., Settings], account: Account
) -> None:
    pipeline = Pipeline(make_settings()).start(("worker", "sweeper"))
    try:
        poison = b"Subject: no sender at all\r\nMessage-ID: <poison@customer.test>\r\n\r\n\xff\xfe broken\r\n"
        account.deliver(make_mail(subject="Good one"), poison, make_mail(subject="Good two"))
        poller = make_poller(pipeline.app, account.mailbox(), account.password)
        with running(poller):
            wait_until(lambda: poller.stats.acknowledged == 3, what="all three flagged")
            pipeline.wait_routed()
        rows = intake_rows(pipeline.app)
        assert [r.state for r in rows] == ["routed", "quarantined", "routed"]
        assert rows[1].error and rows[1].raw_sha256
        assert sorted(t["subject"] for t in pipeline.tickets()) == ["Good one", "Good two"]
        assert poller.stats.quarantined == 1
        assert all(SEEN in f for f in account.flags().values())
    finally:
        pipeline.stop()


def _rename_intake(app: App, old: str, new: str) -> None:
    import sqlite3

    with sqlite3.connect(str(app.db.engine.url.database)) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def test_store_unavailable_leaves_the_message_unseen_and_imports_it_later(
    app: App, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    account.deliver(*mails(2))
    _rename_intake(app, "intake", "intake_away")  # the intake log cannot commit
    poller = make_poller(app, account.mailbox(), account.password, backoff_base=0.1, backoff_cap=0.2)
    with caplog.at_level(logging.WARNING, logger="intake.email.imap"), running(poller):
        wait_until(lambda: poller.stats.failures >= 2, what="failed attempts")
        assert all(SEEN not in f for f in account.flags().values())  # untouched on the server
        assert Checkpoints(app.db).get("support", "INBOX").last_uid == 0  # type: ignore[union-attr]
        _rename_intake(app, "intake_away", "intake")
        wait_until(lambda: poller.stats.acknowledged == 2, what="the retry")
    assert len(intake_rows(app)) == 2
    assert all(SEEN in f for f in account.flags().values())
    lines = [r.getMessage() for r in caplog.records if "could not store" in r.getMessage()]
    assert lines and "IMAP mailbox support" in lines[0] and "retry" in lines[0]


def test_a_dropped_connection_is_noticed_and_reconnected(app: App, account: Account) -> None:
    poller = make_poller(app, account.mailbox(), account.password, poll_seconds=600)
    with running(poller):
        wait_until(poller.waiting.is_set, what="idling")
        client = poller._client
        assert client is not None
        import socket

        client.socket().shutdown(socket.SHUT_RDWR)  # the line dies under IDLE
        wait_until(lambda: len(poller.stats.errors) > 0, what="the failure to be noticed")
        wait_until(lambda: poller.waiting.is_set() and poller._client is not client, what="reconnect")
        account.deliver(*mails(1, "After reconnect"))
        wait_rows(app, 1, timeout=5)
    assert "connection" in poller.stats.errors[0]


# --- several pollers, several mailboxes -------------------------------------------------------------------
def test_two_pollers_race_for_one_mailbox_and_only_one_holds_the_lease(app: App, account: Account) -> None:
    account.deliver(*mails(10))
    box = account.mailbox()
    a = make_poller(app, box, account.password, holder="machine-a", standby_seconds=0.1)
    b = make_poller(app, box, account.password, holder="machine-b", standby_seconds=0.1)
    with running(a, b):
        wait_rows(app, 10)
        wait_until(lambda: a.stats.acknowledged + b.stats.acknowledged == 10, what="all flagged")
        assert a.holding.is_set() != b.holding.is_set()
        active, standby = (a, b) if a.holding.is_set() else (b, a)
        assert standby.stats.accepted == standby.stats.duplicates == 0
        with app.db.read() as session:
            assert session.get(ChannelLease, "imap:support").holder == active.holder  # type: ignore[union-attr]

        active.stop()  # a clean stop releases the lease: the standby takes over at once
        wait_until(standby.holding.is_set, timeout=5, what="failover")
        account.deliver(*mails(1, "After failover"))
        wait_rows(app, 11)
    assert len({r.external_id for r in intake_rows(app)}) == 11
    assert active.stats.duplicates == standby.stats.duplicates == 0


def test_an_expired_lease_is_taken_over(app: App) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    a = Lease(app.db, "box", "machine-a", ttl=60, clock=lambda: now[0])
    b = Lease(app.db, "box", "machine-b", ttl=60, clock=lambda: now[0])
    assert a.acquire()
    assert a.acquire()  # renewing our own lease
    now[0] += timedelta(seconds=59)
    assert not b.acquire()  # still a's
    now[0] += timedelta(seconds=2)  # a crashed 61 s ago: it never renewed
    assert b.acquire()
    assert b.holder_now() == "machine-b"
    assert not a.acquire_if_ours()  # a wakes up: it must not take the lease back by renewing
    with pytest.raises(LeaseLost):
        a.renew()
    b.release()  # a clean stop hands it over at once
    assert a.acquire()


def test_a_broken_mailbox_does_not_stop_a_good_one(
    make_settings: Callable[..., Settings], account: Account, dovecot: DovecotServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    other = Account(dovecot)
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"""\
imap:
  - name: broken
    host: 127.0.0.1
    port: {dovecot.port}
    security: none
    username: {other.user}
    password_env: OMNIDESK_IMAP_BROKEN_PASSWORD
  - name: support
    host: 127.0.0.1
    port: {dovecot.port}
    security: none
    username: {account.user}
    password_env: OMNIDESK_IMAP_SUPPORT_PASSWORD
    address: support@example.com
""")
    wrong = "wrong-" + uuid.uuid4().hex
    monkeypatch.setenv("OMNIDESK_IMAP_BROKEN_PASSWORD", wrong)
    monkeypatch.setenv("OMNIDESK_IMAP_SUPPORT_PASSWORD", account.password)
    other.deliver(*mails(1, "Never seen"))
    account.deliver(make_mail(subject="Through the good mailbox"))
    pipeline = Pipeline(make_settings(channels_file=channels))
    with caplog.at_level(logging.INFO):
        pipeline.start(("worker", "sweeper", "imap"))  # what `omnidesk run` does
        try:
            pipeline.wait_for_messages(1)
            wait_until(lambda: any("broken" in r.getMessage() and "login refused" in r.getMessage()
                                   for r in caplog.records), what="the failure logged")
        finally:
            pipeline.stop()
    assert [t["subject"] for t in pipeline.tickets()] == ["Through the good mailbox"]
    failure = next(r.getMessage() for r in caplog.records if "login refused" in r.getMessage())
    assert "IMAP mailbox broken" in failure and other.user in failure and "OMNIDESK_IMAP_BROKEN_PASSWORD" in failure
    assert wrong not in caplog.text and account.password not in caplog.text  # never a password


def test_no_channels_file_means_no_pollers(app: App) -> None:
    # config/channels.yaml absent (a laptop): the email adapter's imap runner has nothing to run.
    assert app.registry.components()["imap"](threading.Event()) is None


def test_channels_file_with_a_missing_password_refuses_to_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from intake.channels import ChannelsError

    channels = tmp_path / "channels.yaml"
    channels.write_text("imap:\n  - name: support\n    host: 127.0.0.1\n    security: none\n"
                        "    username: support@example.com\n    password_env: OMNIDESK_NOT_SET_ANYWHERE\n")
    application = App(make_settings(channels_file=channels), load_rules=False)
    try:
        with pytest.raises(ChannelsError) as error:
            application.registry.components()["imap"](threading.Event())
        assert error.value.errors == [
            (f"{channels}:6:19: imap[0].password_env: environment variable OMNIDESK_NOT_SET_ANYWHERE is "
             "not set; it must hold the password of mailbox 'support'")
        ]
    finally:
        application.close()


def test_start_pollers_returns_a_stopper_for_every_mailbox(app: App, account: Account, tmp_path: Path) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"imap:\n  - name: support\n    host: 127.0.0.1\n    port: {account.server.port}\n"
                        f"    security: none\n    username: {account.user}\n    password_env: PW\n")
    env = {"PW": account.password}
    account.deliver(*mails(1))
    stopper = start_pollers(load_channels(channels, environ=env).imap, accept=app.accept_email, db=app.db,
                            stop_event=threading.Event(), environ=env, **FAST)
    assert stopper is not None
    try:
        wait_rows(app, 1)
    finally:
        started = time.monotonic()
        stopper()
        assert time.monotonic() - started < 3
    assert [r["address"] for r in intake_rows(app)[0].envelope["recipients"]] == [account.user]  # type: ignore[index]


# --- TLS ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_starttls_with_the_certificate_verified(app: App, account: Account, security: str) -> None:
    server = account.server
    if server.ca_file is None:
        missing(f"no TLS for Dovecot: {server.tls_error}")
    port = server.tls_port if security == "tls" else server.port
    box = account.mailbox(security=security, port=port, ca_file=str(server.ca_file))
    account.deliver(*mails(1, "Over TLS"))
    poller = make_poller(app, box, account.password)
    with running(poller):
        wait_rows(app, 1)
    assert subjects(app) == ["Over TLS 0"]


def test_an_untrusted_certificate_is_refused(app: App, account: Account) -> None:
    server = account.server
    if server.tls_port is None:
        missing(f"no TLS for Dovecot: {server.tls_error}")
    box = account.mailbox(security="tls", port=server.tls_port)  # system CAs: our test CA is unknown
    poller = make_poller(app, box, account.password)
    with running(poller):
        wait_until(lambda: len(poller.stats.errors) > 0, what="the failure")
    assert "certificate" in poller.stats.errors[0] and "not trusted" in poller.stats.errors[0]
    assert intake_rows(app) == []


# --- omnidesk channels check ---------------------------------------------------------------------------------
def test_channels_check_logs_in_and_reports_each_mailbox(
    make_settings: Callable[..., Settings], account: Account, dovecot: DovecotServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from omnidesk.cli_channels import register

    account.deliver(*mails(2))
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"""\
imap:
  - name: support
    host: 127.0.0.1
    port: {dovecot.port}
    security: none
    username: {account.user}
    password_env: GOOD_PW
    move_to: Processed
  - name: wrong
    host: 127.0.0.1
    port: {dovecot.port}
    security: none
    username: {account.user}
    password_env: BAD_PW
    folder: Elsewhere
""")
    monkeypatch.setenv("GOOD_PW", account.password)
    monkeypatch.setenv("BAD_PW", "not-the-password")
    parser = argparse.ArgumentParser(prog="omnidesk")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["channels", "check", "--timeout", "5"])
    status = args.handler(args, make_settings(channels_file=channels))
    out = capsys.readouterr().out
    assert status == 1
    support = next(line for line in out.splitlines() if line.strip().startswith("support"))
    assert "OK" in support and "2 messages (2 unseen)" in support
    assert f"UIDVALIDITY {dovecot.uidvalidity(account.user)}" in support
    assert "IDLE yes" in support and "MOVE yes" in support and "move_to Processed will be created" in support
    wrong = next(line for line in out.splitlines() if line.strip().startswith("wrong"))
    assert "FAILED" in wrong and "login refused" in wrong and "BAD_PW" in wrong
    assert "not-the-password" not in out and account.password not in out
    assert account.uids("INBOX") and all(SEEN not in f for f in account.flags().values())  # changed nothing


# --- the state tables on PostgreSQL ----------------------------------------------------------------------
@pytest.mark.postgres
def test_checkpoints_and_leases_on_postgres(make_settings: Callable[..., Settings], postgres_url: str) -> None:
    application = App(make_settings(database_url=postgres_url), load_rules=False)
    try:
        application.migrate()
        checkpoints = Checkpoints(application.db)
        checkpoints.save("support", "INBOX", account="a@h", uidvalidity=4_000_000_000, last_uid=7)
        checkpoints.save("support", "INBOX", account="a@h", uidvalidity=4_000_000_000, last_uid=5)
        assert checkpoints.get("support", "INBOX").last_uid == 7  # type: ignore[union-attr]
        checkpoints.save("support", "INBOX", account="a@h", uidvalidity=12, last_uid=1)
        assert checkpoints.get("support", "INBOX").uidvalidity == 12  # type: ignore[union-attr]

        leases = [Lease(application.db, "support", f"h{n}", ttl=30) for n in range(6)]
        results: list[bool] = []
        threads = [threading.Thread(target=lambda lease=lease: results.append(lease.acquire())) for lease in leases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False] * 5 + [True]
    finally:
        application.close()
