"""agents at work: accounts and API tokens, ticket versions, merges, links, lifecycle times

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

- ``agents`` and ``api_tokens`` (hashed; named by prefix);
- ``tickets`` gains ``version`` (for ``If-Match``), ``merged_into_id``, ``resolved_at``,
  ``closed_at``, ``reopened_count`` and ``first_agent_action_at``;
- ``ticket_messages`` gains ``actor`` (who) and ``event`` (what changed, for EVENT entries);
- ``ticket_links`` ties related, merged and follow-up tickets together.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tickets.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = tickets.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("teams", _JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", _ID, nullable=False),
        sa.Column("agent_id", _ID, nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prefix"),
    )
    with op.batch_alter_table("api_tokens") as batch:
        batch.create_index("ix_api_tokens_agent_id", ["agent_id"], unique=False)
    op.create_table(
        "ticket_links",
        sa.Column("ticket_id", _ID, nullable=False),
        sa.Column("other_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["other_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ticket_id", "other_id"),
    )
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("merged_into_id", _ID, nullable=True))
        batch.add_column(sa.Column("resolved_at", _TS, nullable=True))
        batch.add_column(sa.Column("closed_at", _TS, nullable=True))
        batch.add_column(sa.Column("reopened_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("first_agent_action_at", _TS, nullable=True))
        batch.create_foreign_key("fk_tickets_merged_into", "tickets", ["merged_into_id"], ["id"])
    with op.batch_alter_table("ticket_messages") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("event", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ticket_messages") as batch:
        batch.drop_column("event")
        batch.drop_column("actor")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_merged_into", type_="foreignkey")
        for column in ("first_agent_action_at", "reopened_count", "closed_at", "resolved_at",
                       "merged_into_id", "version"):
            batch.drop_column(column)
    op.drop_table("ticket_links")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_agent_id")
    op.drop_table("api_tokens")
    op.drop_table("agents")
