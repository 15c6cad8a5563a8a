"""The trader's tables (migration ``0005_trader``), mapped on the shared ``Base``.

``account`` is never the account number: it is ``account_key(settings)``, a hash of domain and
account, so rows from several accounts can share a database without exposing who they are.
Money is ``BigInteger`` KRW.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base
from common.db.models import JsonDocument

# SQLite only auto-increments an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class OrderStatus(StrEnum):
    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
OPEN_STATUSES = frozenset({OrderStatus.NEW, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})

# The state machine: every change of status goes through one of these edges.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED}),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED}),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


class TraderAccount(Base):
    """The trader's own ledger of one broker account: cash and running P&L figures."""

    __tablename__ = "trader_accounts"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    cash: Mapped[int] = mapped_column(BigInteger)
    realised_pnl: Mapped[int] = mapped_column(BigInteger)
    fees_paid: Mapped[int] = mapped_column(BigInteger)
    peak_equity: Mapped[int] = mapped_column(BigInteger)
    day: Mapped[date | None] = mapped_column(Date)
    day_start_equity: Mapped[int | None] = mapped_column(BigInteger)
    initialised_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Order(Base):
    """One order: created NEW (persisted before the broker hears of it), then driven by the state machine."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("account", "idempotency_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    symbol: Mapped[str] = mapped_column(String(7))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[int] = mapped_column(BigInteger)
    limit_price: Mapped[int | None] = mapped_column(BigInteger)
    # The unit price a buy reserves cash at: the limit, or the day's upper limit for a market order.
    reserve_price: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    filled_quantity: Mapped[int] = mapped_column(BigInteger)
    filled_value: Mapped[int] = mapped_column(BigInteger)
    notified_quantity: Mapped[int] = mapped_column(BigInteger)
    commission: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    broker_order_no: Mapped[str | None] = mapped_column(String(16))
    broker_org_no: Mapped[str | None] = mapped_column(String(8))
    submit_attempts: Mapped[int] = mapped_column(Integer)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    trading_day: Mapped[date] = mapped_column(Date)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]

    @property
    def state(self) -> OrderStatus:
        return OrderStatus(self.status)

    @property
    def remaining(self) -> int:
        return 0 if self.state.is_final else self.quantity - self.filled_quantity


class Fill(Base):
    """One execution; ``fill_id`` is the broker order number and the cumulative quantity after it."""

    __tablename__ = "fills"

    fill_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[uuid.UUID] = mapped_column(index=True)
    symbol: Mapped[str] = mapped_column(String(7))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    gross: Mapped[int] = mapped_column(BigInteger)
    commission: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    filled_at: Mapped[datetime]


class Position(Base):
    """Shares held in one symbol, at average cost (fees excluded, as the broker reports it)."""

    __tablename__ = "positions"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[int] = mapped_column(BigInteger)
    realised_pnl: Mapped[int] = mapped_column(BigInteger)
    last_price: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
    # Cost and quantity after the last buy (or as adopted from the broker): sales scale it.
    basis_cost: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), default=0)
    basis_quantity: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), default=0)


class AuditEntry(Base):
    """Every order transition, kill-switch change and reconciliation difference, in order."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class AccountSnapshot(Base):
    """What the broker reported at one reconciliation, and how it differed from the ledger."""

    __tablename__ = "account_snapshots"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    broker_cash: Mapped[int] = mapped_column(BigInteger)
    ledger_cash: Mapped[int] = mapped_column(BigInteger)
    holdings: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    differences: Mapped[list[Any]] = mapped_column(JsonDocument)
    difference_count: Mapped[int] = mapped_column(Integer)


class KillSwitch(Base):
    """Whether new orders are halted for an account; survives restarts."""

    __tablename__ = "kill_switch"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    engaged: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime]


class TraderLease(Base):
    """The single-writer lease of an account; ``epoch`` grows with every change of holder."""

    __tablename__ = "trader_lease"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class NotificationRecord(Base):
    """A notification and what became of it (sent, failed, suppressed by the rate limit)."""

    __tablename__ = "notifications"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(200))


Index("ix_orders_account_status", Order.account, Order.status)
Index("ix_orders_account_created_at", Order.account, Order.created_at)
Index("ix_orders_account_broker_order_no", Order.account, Order.broker_order_no)
Index("ix_audit_log_account_at", AuditEntry.account, AuditEntry.at)
Index("ix_account_snapshots_account_at", AccountSnapshot.account, AccountSnapshot.at)
Index("ix_notifications_at", NotificationRecord.at)
