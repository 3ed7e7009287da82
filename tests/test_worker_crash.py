"""A worker killed mid-batch loses nothing and duplicates nothing: the intake log and the
sweeper bring its messages back within seconds, whatever the broker does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.corpus import generate_corpus
from config.settings import Settings
from omnidesk.app import App
from tests.pipeline import assert_threaded_like
from tickets.models import IntakeRow


def _worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "omnidesk.cli", "worker"], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _routed(app: App) -> int:
    with app.db.read() as session:
        return int(session.execute(
            select(func.count()).select_from(IntakeRow).where(IntakeRow.state == "routed")
        ).scalar_one())


@pytest.mark.postgres
@pytest.mark.redis
def test_killed_worker_loses_and_duplicates_nothing(
    make_settings: Callable[..., Settings], postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    from dramatiq.brokers.redis import RedisBroker

    namespace = f"omnidesk-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(database_url=postgres_url, redis_url=redis_url, smtp_domains=("acme.test",),
                             support_address="support@acme.test", worker_threads=4)
    broker = RedisBroker(url=redis_url, namespace=namespace, heartbeat_timeout=5000)
    app = App(settings, broker=broker)
    app.migrate()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIDESK_")}
    env.update({
        "OMNIDESK_DATABASE_URL": postgres_url, "OMNIDESK_REDIS_URL": redis_url,
        "OMNIDESK_DATA_DIR": str(settings.data_dir), "OMNIDESK_SMTP_DOMAINS": "acme.test",
        "OMNIDESK_SUPPORT_ADDRESS": "support@acme.test", "OMNIDESK_RULES_FILE": str(settings.rules_file),
        "OMNIDESK_WORKER_THREADS": "4", "OMNIDESK_REDIS_NAMESPACE": namespace,
    })
    corpus = generate_corpus(300, seed=5)
    first = _worker(env, tmp_path)
    second = None
    try:
        for m in corpus.shuffled(2):
            app.accept_email(m.raw, [m.to_address], datetime.now(timezone.utc), source="test")
        deadline = time.monotonic() + 60
        while _routed(app) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)  # mid-batch: jobs in hand and prefetched are lost with it
        first.wait(timeout=10)
        killed_at = _routed(app)
        assert killed_at < 300, "the worker finished before it could be killed; raise the corpus size"

        second = _worker(env, tmp_path)
        deadline = time.monotonic() + 90
        while _routed(app) < 300 and time.monotonic() < deadline:
            app.sweeper.sweep_once()  # the scheduler's job; run here on a short grace
            time.sleep(0.5)
        assert _routed(app) == 300
        assert_threaded_like(app, corpus.manifest(), expected_messages=300)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        app.close()
