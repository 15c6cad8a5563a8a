"""Model trainer: model registry, training jobs and their progress series.

Revision ID: 0004
Revises: 0001
Create Date: 2025-01-22 00:00:00+00:00

Small tables read by key; plain on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("promoted_at", nullable=True),
        sa.Column("data_hash", sa.String(64), nullable=False),
        sa.Column("symbols", _json(), nullable=False),
        sa.Column("ranges", _json(), nullable=False),
        sa.Column("feature_set", sa.String(64), nullable=False),
        sa.Column("feature_names", _json(), nullable=False),
        sa.Column("timeframe", sa.String(4), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        sa.Column("artifact_uri", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.CheckConstraint("status IN ('registered', 'promoted', 'retired')", name="ck_models_status"),
    )
    op.create_index("ix_models_job_id", "models", ["job_id"])
    op.create_index("ix_models_status", "models", ["status"])
    op.create_index("ix_models_created_at", "models", ["created_at"])
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("progress", _json(), nullable=False),
        sa.Column("report", _json(), nullable=True),
        sa.Column("model_ids", _json(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        _ts("interrupted_at", nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_training_jobs"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')",
            name="ck_training_jobs_status",
        ),
    )
    op.create_index("ix_training_jobs_status", "training_jobs", ["status"])
    op.create_index("ix_training_jobs_created_at", "training_jobs", ["created_at"])
    op.create_table(
        "training_progress",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _ts("recorded_at"),
        sa.Column("fold", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("steps", sa.BigInteger(), nullable=False),
        sa.Column("episodes", sa.BigInteger(), nullable=False),
        sa.Column("elapsed", sa.Float(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("policy_loss", sa.Float(), nullable=True),
        sa.Column("value_loss", sa.Float(), nullable=True),
        sa.Column("entropy", sa.Float(), nullable=True),
        sa.Column("val_sharpe", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["training_jobs.id"],
            name="fk_training_progress_job_id_training_jobs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name="pk_training_progress"),
    )


def downgrade() -> None:
    for name in ("training_progress", "training_jobs", "models"):
        op.drop_table(name)
