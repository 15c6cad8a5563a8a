"""Trader: orders and their audit log, fills, positions, the account ledger and broker snapshots,
the kill switch, the single-writer lease and notifications.

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-21 00:00:00+00:00

Plain tables on every backend; the DDL is spelled out here so this revision keeps creating what
it created the day it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _krw(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _account() -> sa.Column[Any]:
    return sa.Column("account", sa.String(32), nullable=False)


def upgrade() -> None:
    op.create_table(
        "trader_accounts",
        _account(),
        _krw("cash"),
        _krw("realised_pnl"),
        _krw("fees_paid"),
        _krw("peak_equity"),
        sa.Column("day", sa.Date(), nullable=True),
        _krw("day_start_equity", nullable=True),
        _ts("initialised_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("account", name="pk_trader_accounts"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        _account(),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("order_type", sa.String(8), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        _krw("limit_price", nullable=True),
        _krw("reserve_price"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("filled_quantity", sa.BigInteger(), nullable=False),
        _krw("filled_value"),
        sa.Column("notified_quantity", sa.BigInteger(), nullable=False),
        _krw("commission"),
        _krw("tax"),
        sa.Column("broker_order_no", sa.String(16), nullable=True),
        sa.Column("broker_org_no", sa.String(8), nullable=True),
        sa.Column("submit_attempts", sa.Integer(), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("trading_day", sa.Date(), nullable=False),
        sa.Column("decision", _json(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("submitted_at", nullable=True),
        _ts("cancel_requested_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("account", "idempotency_key", name="uq_orders_account_idempotency_key"),
    )
    op.create_index("ix_orders_account_status", "orders", ["account", "status"])
    op.create_index("ix_orders_account_created_at", "orders", ["account", "created_at"])
    op.create_index("ix_orders_account_broker_order_no", "orders", ["account", "broker_order_no"])
    op.create_table(
        "fills",
        sa.Column("fill_id", sa.String(64), nullable=False),
        _account(),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        _krw("price"),
        _krw("gross"),
        _krw("commission"),
        _krw("tax"),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("filled_at"),
        sa.PrimaryKeyConstraint("fill_id", name="pk_fills"),
    )
    op.create_index("ix_fills_order_id", "fills", ["order_id"])
    op.create_table(
        "positions",
        _account(),
        sa.Column("symbol", sa.String(7), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        _krw("cost"),
        _krw("realised_pnl"),
        _krw("last_price"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("account", "symbol", name="pk_positions"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        _account(),
        _ts("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_order_id", "audit_log", ["order_id"])
    op.create_index("ix_audit_log_account_at", "audit_log", ["account", "at"])
    op.create_table(
        "account_snapshots",
        sa.Column("id", sa.Uuid(), nullable=False),
        _account(),
        _ts("at"),
        _krw("broker_cash"),
        _krw("ledger_cash"),
        sa.Column("holdings", _json(), nullable=False),
        sa.Column("differences", _json(), nullable=False),
        sa.Column("difference_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_snapshots"),
    )
    op.create_index("ix_account_snapshots_account_at", "account_snapshots", ["account", "at"])
    op.create_table(
        "kill_switch",
        _account(),
        sa.Column("engaged", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        _ts("changed_at"),
        sa.PrimaryKeyConstraint("account", name="pk_kill_switch"),
    )
    op.create_table(
        "trader_lease",
        _account(),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        _ts("acquired_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("account", name="pk_trader_lease"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        _ts("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_at", "notifications", ["at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_at", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("trader_lease")
    op.drop_table("kill_switch")
    op.drop_index("ix_account_snapshots_account_at", table_name="account_snapshots")
    op.drop_table("account_snapshots")
    op.drop_index("ix_audit_log_account_at", table_name="audit_log")
    op.drop_index("ix_audit_log_order_id", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("positions")
    op.drop_index("ix_fills_order_id", table_name="fills")
    op.drop_table("fills")
    op.drop_index("ix_orders_account_broker_order_no", table_name="orders")
    op.drop_index("ix_orders_account_created_at", table_name="orders")
    op.drop_index("ix_orders_account_status", table_name="orders")
    op.drop_table("orders")
    op.drop_table("trader_accounts")
