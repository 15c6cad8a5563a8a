"""Data collector: collection jobs with checkpoints, their events (gaps, reconnects, errors) and
the latest market snapshot per symbol.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-27 00:00:00+00:00

Small tables read by key: plain tables on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "collection_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("active_key", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("symbols_total", sa.Integer(), nullable=False),
        sa.Column("symbols_done", sa.Integer(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("bars_published", sa.BigInteger(), nullable=False),
        sa.Column("ticks_published", sa.BigInteger(), nullable=False),
        sa.Column("current_symbol", sa.String(7), nullable=True),
        sa.Column("current_day", sa.Date(), nullable=True),
        sa.Column("checkpoint", _json(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("resumes", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("run_started_at", nullable=True),
        sa.Column("run_chunks_at_start", sa.Integer(), nullable=False),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_collection_jobs"),
        sa.UniqueConstraint("active_key", name="uq_collection_jobs_active_key"),
        sa.CheckConstraint("kind IN ('backfill', 'stream')", name="ck_collection_jobs_kind"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted')",
            name="ck_collection_jobs_status",
        ),
    )
    op.create_index("ix_collection_jobs_idempotency_key", "collection_jobs", ["idempotency_key"])
    op.create_index("ix_collection_jobs_status", "collection_jobs", ["status"])
    op.create_index("ix_collection_jobs_created_at", "collection_jobs", ["created_at"])
    op.create_table(
        "collection_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        _ts("at"),
        sa.Column("symbol", sa.String(7), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collection_events"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["collection_jobs.id"],
            name="fk_collection_events_job_id_collection_jobs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_collection_events_kind", "collection_events", ["kind"])
    op.create_index("ix_collection_events_job_id_at", "collection_events", ["job_id", "at"])
    op.create_table(
        "market_snapshots",
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=True),
        sa.Column("change", sa.BigInteger(), nullable=True),
        sa.Column("volume", sa.BigInteger(), nullable=True),
        _ts("traded_at", nullable=True),
        sa.Column("best_ask", sa.BigInteger(), nullable=True),
        sa.Column("best_ask_quantity", sa.BigInteger(), nullable=True),
        sa.Column("best_bid", sa.BigInteger(), nullable=True),
        sa.Column("best_bid_quantity", sa.BigInteger(), nullable=True),
        _ts("book_at", nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("symbol", name="pk_market_snapshots"),
    )


def downgrade() -> None:
    for name in ("market_snapshots", "collection_events", "collection_jobs"):
        op.drop_table(name)
