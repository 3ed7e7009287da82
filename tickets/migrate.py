"""Schema migrations (Alembic), run programmatically: ``omnidesk db upgrade``."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tickets.db import Database

__all__ = ["current_revision", "head_revision", "upgrade"]

_SCRIPTS = Path(__file__).parent / "migrations"


# Alembic announces every migration step at INFO; the operator only needs to hear of problems.
logging.getLogger("alembic").setLevel(logging.WARNING)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    cfg = _config()
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()
