"""Data processor: fundamentals of broker quotes (``market.quote.v1``), one row per symbol and fetch time.

Revision ID: 0008
Revises: 0002
Create Date: 2026-11-21 00:00:00+00:00

A small table read by key (the latest row at or before a bar's close), so a plain table on
every backend. Decimal ratios are NUMERIC on PostgreSQL and exact decimal text on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _decimal() -> sa.types.TypeEngine[Any]:
    return sa.String(40).with_variant(sa.Numeric(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "fundamentals",
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("per", _decimal(), nullable=True),
        sa.Column("pbr", _decimal(), nullable=True),
        sa.Column("eps", _decimal(), nullable=True),
        sa.Column("bps", _decimal(), nullable=True),
        sa.Column("market_cap", sa.BigInteger(), nullable=True),
        sa.Column("foreign_ownership_pct", _decimal(), nullable=True),
        sa.Column("listed_shares", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "ts", name="pk_fundamentals"),
    )


def downgrade() -> None:
    op.drop_table("fundamentals")
