"""Inferencer: the decisions it made, with the model version and feature timestamp each used.

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-21 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("timeframe", sa.String(4), nullable=False),
        sa.Column("feature_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feature_set", sa.String(64), nullable=False),
        sa.Column("close", sa.BigInteger(), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("action_index", sa.Integer(), nullable=False),
        sa.Column("target_exposure", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("probabilities", _json(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trade_status", sa.String(32), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_symbol_feature_ts", "decisions", ["symbol", sa.text("feature_ts DESC")])


def downgrade() -> None:
    op.drop_index("ix_decisions_symbol_feature_ts", table_name="decisions")
    op.drop_table("decisions")
