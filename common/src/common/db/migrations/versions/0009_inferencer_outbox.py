"""Inferencer: recurrent state stored with each decision, and the decision outbox.

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-21 00:00:00+00:00

``state`` holds the LSTM state after the decision (float32 h then c), so any replica — or the
same one after a restart — continues a symbol's recurrent memory from the database instead of
its own RAM. ``attempts``/``next_attempt_at`` make ``decisions`` the outbox of trader calls:
a decision waits as ``pending`` (or ``error``) until the trader has answered for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("state", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_decisions_model_symbol_feature_ts",
        "decisions",
        ["model_version", "symbol", "timeframe", sa.text("feature_ts DESC")],
    )
    op.create_index("ix_decisions_trade_status", "decisions", ["trade_status"])


def downgrade() -> None:
    op.drop_index("ix_decisions_trade_status", table_name="decisions")
    op.drop_index("ix_decisions_model_symbol_feature_ts", table_name="decisions")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
        batch.drop_column("state")
