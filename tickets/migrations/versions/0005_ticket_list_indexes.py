"""ticket list indexes: keyset pages by (updated_at, id) and (created_at, id), per filter

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

The single-column indexes on ``tickets.status``, ``queue``, ``assignee`` and ``contact_id``
become ``(column, updated_at, id)``: the same prefix for equality lookups, and a filtered page
newest first read straight from the index (``tickets.search``). ``(updated_at, id)`` and
``(created_at, id)`` serve the unfiltered list and the filters without an index of their own.
``ticket_links.other_id`` finds the links made to a ticket (its primary key starts with the
ticket that made the link).

On PostgreSQL, subjects also get a trigram index for text search, if the ``pg_trgm`` extension
can be created (it ships with PostgreSQL's contrib package and is trusted since PostgreSQL 13,
so the database's owner needs no superuser). If it cannot, the upgrade says so and goes on:
search then reads the rows instead, which is slow for rare words on a large store.

The indexes are built with plain ``CREATE INDEX``, inside the migration's transaction, which
holds off writes to ``tickets`` while it runs: 41 s at a million tickets on a busy 2-core
machine (measured; the trigram index is a third of it). Routing waits meanwhile, and intake
keeps accepting: the sweeper routes what arrived once the upgrade commits.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

log = logging.getLogger("omnidesk.migrations")

# (old single-column index, its column): each becomes (column, updated_at, id).
_LEADING = (
    ("ix_tickets_status", "status"),
    ("ix_tickets_queue", "queue"),
    ("ix_tickets_assignee", "assignee"),
    ("ix_tickets_contact_id", "contact_id"),
)
_NEW = {"contact_id": "ix_tickets_contact_updated"}
_TRIGRAM = "ix_tickets_subject_trgm"


def _composite(column: str) -> str:
    return _NEW.get(column, f"ix_tickets_{column}_updated")


def _trigrams_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    try:
        # A savepoint: a refused CREATE EXTENSION must not abort the migration's transaction.
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError as exc:
        log.warning(
            "pg_trgm is not available (%s): ticket text search will read rows instead of an "
            "index. To add the index later: CREATE EXTENSION pg_trgm; CREATE INDEX %s ON tickets "
            "USING gin (subject gin_trgm_ops);", str(exc.orig).strip().splitlines()[0], _TRIGRAM)
        return False
    return True


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for old, column in _LEADING:
            batch.drop_index(old)
            batch.create_index(_composite(column), [column, "updated_at", "id"], unique=False)
        batch.create_index("ix_tickets_updated", ["updated_at", "id"], unique=False)
        batch.create_index("ix_tickets_created", ["created_at", "id"], unique=False)
    with op.batch_alter_table("ticket_links") as batch:
        batch.create_index("ix_ticket_links_other", ["other_id"], unique=False)
    if _trigrams_available():
        op.create_index(_TRIGRAM, "tickets", ["subject"], postgresql_using="gin",
                        postgresql_ops={"subject": "gin_trgm_ops"})


def downgrade() -> None:
    # The extension stays: something else may use it, and dropping it needs its owner.
    op.execute(f"DROP INDEX IF EXISTS {_TRIGRAM}")
    with op.batch_alter_table("ticket_links") as batch:
        batch.drop_index("ix_ticket_links_other")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_index("ix_tickets_created")
        batch.drop_index("ix_tickets_updated")
        for old, column in _LEADING:
            batch.drop_index(_composite(column))
            batch.create_index(old, [column], unique=False)
