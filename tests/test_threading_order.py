"""Threading does not depend on arrival order: a whole mailbox delivered at once, shuffled, gives
exactly one ticket per conversation with every reply on its ticket, no message twice, and the
unparseable messages in quarantine — not lost, not blocking the rest."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from bench.corpus import generate_corpus
from config.settings import Settings
from tests.pipeline import Pipeline, assert_threaded_like
from tickets.models import IntakeRow

POISON = [
    b"\x00\x01\x02 not a mail at all \xff\xfe",
    b"Subject: no sender here\r\n\r\nbody without a From header\r\n",
    # MIME nested deeper than the parser's limit
    b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    + b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(60)),
]


def _import(make_settings: Callable[..., Settings], n: int, **settings: str) -> None:
    corpus = generate_corpus(n, seed=11)
    p = Pipeline(make_settings(smtp_domains=("acme.test",), support_address="support@acme.test", **settings))
    p.start(("worker",))
    try:
        deliveries = [(m.raw, m.to_address) for m in corpus.shuffled(5)]
        # The same mailbox fetched twice (a client crashed before flagging), and poison in between.
        deliveries += random.Random(3).sample(deliveries, k=n // 10)
        deliveries += [(raw, "support@acme.test") for raw in POISON]
        random.Random(4).shuffle(deliveries)
        for raw, to in deliveries:
            p.app.accept_email(raw, [to], datetime.now(timezone.utc), source="test")
        p.wait_routed(timeout=180)

        assert_threaded_like(p.app, corpus.manifest(), expected_messages=n)
        with p.app.db.read() as session:
            quarantined = session.query(IntakeRow).filter(IntakeRow.state == "quarantined").count()
        assert quarantined == len(POISON)
    finally:
        p.stop()


def test_shuffled_mailbox_threads_exactly(make_settings: Callable[..., Settings]) -> None:
    _import(make_settings, 600)


@pytest.mark.slow
def test_shuffled_2000_message_mailbox_threads_exactly(make_settings: Callable[..., Settings]) -> None:
    _import(make_settings, 2000)


@pytest.mark.postgres
def test_shuffled_mailbox_threads_exactly_on_postgres(
    make_settings: Callable[..., Settings], postgres_url: str
) -> None:
    _import(make_settings, 600, database_url=postgres_url)
