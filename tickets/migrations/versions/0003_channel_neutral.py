"""channel-neutral store: generic cursors and leases, outbox idempotency keys, intake meta

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

- ``imap_checkpoints`` and ``imap_leases`` become ``channel_cursors`` and ``channel_leases``
  (rows carried over: stream ``imap:<mailbox>/<folder>``, epoch ``<account>#<uidvalidity>``);
- ``outbox.message_id`` becomes ``idempotency_key``; ``claimed_by`` names the claiming process;
- ``intake`` gains ``meta`` (transport facts for replay) and ``sweeps`` (re-enqueues, apart
  from failed ``attempts``);
- thread keys are namespaced by their channel: ``mid:<a@b>`` becomes ``email:mid:<a@b>``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tickets.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "channel_cursors",
        sa.Column("stream", sa.String(length=700), nullable=False),
        sa.Column("epoch", sa.String(length=700), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream"),
    )
    op.create_table(
        "channel_leases",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "process_heartbeats",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("beat_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", tickets.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("process_heartbeats") as batch:
        batch.create_index("ix_process_heartbeats_beat_at", ["beat_at"], unique=False)

    bind = op.get_bind()
    concat = "||"
    bind.execute(sa.text(
        f"INSERT INTO channel_cursors (stream, epoch, position, updated_at) "
        f"SELECT 'imap:' {concat} mailbox {concat} '/' {concat} folder, "
        f"account {concat} '#' {concat} CAST(uidvalidity AS VARCHAR(20)), last_uid, updated_at "
        f"FROM imap_checkpoints"
    ))
    bind.execute(sa.text(
        f"INSERT INTO channel_leases (name, holder, expires_at, acquired_at) "
        f"SELECT 'imap:' {concat} mailbox, holder, expires_at, acquired_at FROM imap_leases"
    ))
    op.drop_table("imap_checkpoints")
    op.drop_table("imap_leases")

    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("message_id", new_column_name="idempotency_key",
                           existing_type=sa.String(length=998), existing_nullable=False)
        batch.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch.create_index("ix_outbox_provider_id", ["provider_id"], unique=False)
    with op.batch_alter_table("intake") as batch:
        batch.add_column(sa.Column("sweeps", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("meta", _JSON, nullable=True))

    bind.execute(sa.text(
        f"UPDATE thread_keys SET key = 'email:' {concat} key WHERE key LIKE 'mid:%'"
    ))
    bind.execute(sa.text(
        "UPDATE thread_keys SET key = SUBSTR(key, 6) WHERE key LIKE 'conv:%'"
    ))


def downgrade() -> None:  # pragma: no cover - forward-only in practice
    raise NotImplementedError("0003 is forward-only: restore a backup to go back")
