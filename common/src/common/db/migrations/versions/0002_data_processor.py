"""Data processor: quarantine of rejected records, bar flags (halts, gaps, corporate actions,
amendments) and persisted processing jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-20 00:00:00+00:00

These tables are small next to ``ticks``/``bars``/``features`` and read by key, so they are
plain tables on every backend (no partitions, no hypertables).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record_kind", sa.String(8), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=True),
        sa.Column("timeframe", sa.String(4), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("record", _json(), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "position", name="pk_quarantine"),
    )
    op.create_index("ix_quarantine_reason", "quarantine", ["reason"])
    op.create_index("ix_quarantine_symbol_ts", "quarantine", ["symbol", "ts"])
    op.create_table(
        "bar_flags",
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("timeframe", sa.String(4), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flag", sa.String(32), nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts", "flag", name="pk_bar_flags"),
    )
    op.create_index("ix_bar_flags_flag", "bar_flags", ["flag"])
    op.create_table(
        "processing_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("symbols", _json(), nullable=False),
        sa.Column("timeframe", sa.String(4), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("features_written", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_processing_jobs"),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="ck_processing_jobs_status"),
    )
    op.create_index("ix_processing_jobs_created_at", "processing_jobs", ["created_at"])


def downgrade() -> None:
    for name in ("processing_jobs", "bar_flags", "quarantine"):
        op.drop_table(name)
