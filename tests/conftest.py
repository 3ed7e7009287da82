"""Shared fixtures: settings in a temp dir, real PostgreSQL/Redis/SMTP peers, the --full flag."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from tests.peers.smtp_sink import SmtpSink

SETTINGS_ENV = [k for k in os.environ if k.startswith("OMNIDESK_") and not k.startswith("OMNIDESK_TEST_")]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help="run the long fault and fuzz runs (marked slow)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="long run: pass --full to include it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the developer's OMNIDESK_* variables or .env file."""
    for key in SETTINGS_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "smtp_domains": ("example.com", "help.example.org"),
            "support_address": "support@example.com",
            "sweep_grace_seconds": 1.0,
            "sweep_interval_seconds": 0.5,
            "rules_file": Path(__file__).resolve().parents[1] / "config" / "routing.yaml",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    url = os.environ.get("OMNIDESK_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from tests.peers.postgres import PostgresServer

    server = PostgresServer()
    yield server.start()
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    from tests.peers.postgres import fresh_database

    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("OMNIDESK_TEST_REDIS_URL")
    if url:
        yield url
        return
    from tests.peers.redis import RedisServer

    server = RedisServer()
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """RabbitMQ: only a given server (OMNIDESK_TEST_AMQP_URL); tests do not start their own."""
    from tests.peers import missing

    url = os.environ.get("OMNIDESK_TEST_AMQP_URL")
    if not url:
        missing("RabbitMQ: set OMNIDESK_TEST_AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/)")
    return str(url)
