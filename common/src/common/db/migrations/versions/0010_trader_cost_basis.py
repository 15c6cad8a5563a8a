"""Trader: each position's cost basis (cost and quantity after its last buy).

Revision ID: 0010
Revises: 0005
Create Date: 2026-11-21 00:00:00+00:00

A sale leaves the shares held at the basis scaled to what is left, so the position's cost is
the same however the broker's fills were grouped (notices one by one or a poll for several).
Existing rows start with 0, which the ledger reads as "use the position's own figures".
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("basis_cost", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("basis_quantity", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("positions") as batch:
        batch.drop_column("basis_quantity")
        batch.drop_column("basis_cost")
