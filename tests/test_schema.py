"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

A column added to a model without a migration (or the other way round) fails here, before a
user's ``omnidesk db upgrade`` leaves their store without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tickets.db import Database
from tickets.migrate import current_revision, head_revision, upgrade
from tickets.models import Base


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_migrations_match_the_models(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}" if store == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    try:
        upgrade(db)
        assert current_revision(db) == head_revision()
        with db.engine.connect() as conn:
            installed = set() if store == "sqlite" else set(
                conn.exec_driver_sql("SELECT extname FROM pg_extension").scalars())

            def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
                # An index that needs an extension exists only where the migration could create
                # the extension (never on SQLite): the model declares it for PostgreSQL.
                needs = getattr(obj, "info", {}).get("requires_extension") if type_ == "index" else None
                return needs is None or needs in installed

            context = MigrationContext.configure(conn, opts={"include_object": include})
            differences = compare_metadata(context, Base.metadata)
        assert differences == [], f"models and migrations differ: {differences}"
    finally:
        db.dispose()
