"""IMAP intake state: folder checkpoints and poller leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tickets.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_checkpoints",
        sa.Column("mailbox", sa.String(length=100), nullable=False),
        sa.Column("folder", sa.String(length=500), nullable=False),
        sa.Column("account", sa.String(length=600), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox", "folder"),
    )
    op.create_table(
        "imap_leases",
        sa.Column("mailbox", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mailbox"),
    )


def downgrade() -> None:
    op.drop_table("imap_leases")
    op.drop_table("imap_checkpoints")
