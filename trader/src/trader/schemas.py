"""Request and response models of the trader's HTTP API. Money is whole KRW; ratios are Decimal."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.contracts import Symbol

from .models import AuditEntry, Fill, Order, Position

IdempotencyKey = str


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecuteRequest(StrictModel):
    """A decision (target exposure or action) or a manual order, keyed for idempotency.

    ``decision_id`` (from the inferencer) or ``idempotency_key`` (any client) names the
    request: the same key twice gives the same order, never a second one.
    """

    decision_id: str | None = Field(default=None, min_length=1, max_length=128)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    source: Literal["decision", "manual"] = "decision"
    symbol: Symbol
    target_exposure: Decimal | None = Field(
        default=None, ge=0, le=1, description="fraction of equity to hold in the symbol"
    )
    action: Literal["buy", "sell", "hold"] | None = None
    quantity: int | None = Field(default=None, gt=0, le=10_000_000)
    price: int | None = Field(default=None, gt=0, description="limit price; omitted: the trader prices it")
    order_type: Literal["limit", "market"] | None = None
    reference_price: int | None = Field(default=None, gt=0, description="the price the decision saw (last close)")
    confidence: float | None = Field(default=None, ge=0, le=1)
    model_version: str | None = Field(default=None, max_length=64)
    feature_ts: datetime | None = None

    @model_validator(mode="after")
    def _one_instruction(self) -> Self:
        if (self.target_exposure is None) == (self.action is None):
            raise ValueError("give exactly one of target_exposure or action")
        if self.action in ("buy", "sell") and self.quantity is None:
            raise ValueError(f"action {self.action} needs a quantity")
        if self.decision_id and self.idempotency_key and self.decision_id != self.idempotency_key:
            raise ValueError("decision_id and idempotency_key differ; give one")
        return self

    @property
    def key(self) -> str | None:
        return self.decision_id or self.idempotency_key


class OrderRequestBody(StrictModel):
    symbol: Symbol
    quantity: int = Field(gt=0, le=10_000_000)
    price: int | None = Field(default=None, gt=0, description="limit price; omitted: a market order")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class OrderView(BaseModel):
    id: uuid.UUID
    idempotency_key: str
    source: str
    symbol: str
    side: str
    order_type: str
    quantity: int
    limit_price: int | None
    status: str
    filled_quantity: int
    filled_value: int
    average_fill_price: Decimal | None
    commission: int
    tax: int
    broker_order_no: str | None
    reject_reason: str | None
    trading_day: date
    decision: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderView:
        average = (
            (Decimal(order.filled_value) / Decimal(order.filled_quantity)).quantize(Decimal("0.01"))
            if order.filled_quantity
            else None
        )
        return cls(
            id=order.id,
            idempotency_key=order.idempotency_key,
            source=order.source,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            limit_price=order.limit_price,
            status=order.status,
            filled_quantity=order.filled_quantity,
            filled_value=order.filled_value,
            average_fill_price=average,
            commission=order.commission,
            tax=order.tax,
            broker_order_no=order.broker_order_no,
            reject_reason=order.reject_reason,
            trading_day=order.trading_day,
            decision=order.decision,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class ExecutionResult(BaseModel):
    idempotency_key: str
    action: Literal["buy", "sell", "none"]
    created: bool
    order: OrderView | None
    reason: str | None = None


class FillView(BaseModel):
    fill_id: str
    quantity: int
    price: int
    gross: int
    commission: int
    tax: int
    source: str
    filled_at: datetime

    @classmethod
    def of(cls, fill: Fill) -> FillView:
        return cls(
            fill_id=fill.fill_id,
            quantity=fill.quantity,
            price=fill.price,
            gross=fill.gross,
            commission=fill.commission,
            tax=fill.tax,
            source=fill.source,
            filled_at=fill.filled_at,
        )


class EventView(BaseModel):
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> EventView:
        return cls(
            at=entry.at,
            kind=entry.kind,
            from_status=entry.from_status,
            to_status=entry.to_status,
            actor=entry.actor,
            detail=entry.detail,
        )


class OrderDetail(BaseModel):
    order: OrderView
    fills: list[FillView]
    events: list[EventView]


class HistoryPage(BaseModel):
    items: list[OrderView]
    total: int
    limit: int
    offset: int


class PositionView(BaseModel):
    symbol: str
    quantity: int
    cost: int
    average_cost: Decimal | None
    last_price: int
    market_value: int
    unrealised_pnl: int
    realised_pnl: int

    @classmethod
    def of(cls, position: Position) -> PositionView:
        average = (
            (Decimal(position.cost) / Decimal(position.quantity)).quantize(Decimal("0.0001"))
            if position.quantity
            else None
        )
        value = position.quantity * position.last_price
        return cls(
            symbol=position.symbol,
            quantity=position.quantity,
            cost=position.cost,
            average_cost=average,
            last_price=position.last_price,
            market_value=value,
            unrealised_pnl=value - position.cost,
            realised_pnl=position.realised_pnl,
        )


class PnlView(BaseModel):
    cash: int
    market_value: int
    equity: int
    realised_pnl: int
    unrealised_pnl: int
    fees_paid: int
    net_pnl: int = Field(description="realised + unrealised - fees and taxes")
    day_start_equity: int | None
    day_pnl: int | None
    peak_equity: int
    drawdown: Decimal


class KillSwitchRequest(StrictModel):
    engaged: bool
    reason: str = Field(min_length=1, max_length=500)
    cancel_open_orders: bool = False
    flatten: bool = Field(default=False, description="also sell every position at market (engaging only)")


class KillSwitchView(BaseModel):
    engaged: bool
    reason: str | None
    actor: str | None
    changed_at: datetime | None
    cancelled_orders: list[uuid.UUID] = Field(default_factory=list)
    flatten_orders: list[uuid.UUID] = Field(default_factory=list)


class ReconciliationView(BaseModel):
    at: datetime | None
    broker_cash: int | None
    ledger_cash: int | None
    differences: list[dict[str, Any]]
    adopted: bool | None = None


class TraderStatus(BaseModel):
    active: bool
    broker_configured: bool
    instance: str
    account: str


class PerformancePoint(BaseModel):
    at: datetime
    equity: int
    benchmark: int | None = Field(description="equal-weight buy & hold of benchmark_symbols, same start equity")
    drawdown: float = Field(description="fraction below the running peak of equity")


class PerformanceMetrics(BaseModel):
    start_equity: int | None
    equity: int | None
    total_return: float | None
    benchmark_return: float | None
    sharpe: float | None = Field(description="annualised, from daily (KST) returns; null under two days")
    max_drawdown: float | None
    win_rate: float | None = Field(description="share of sells closed at a profit after fees")
    closed_trades: int
    fills: int


class PerformanceView(BaseModel):
    points: list[PerformancePoint]
    benchmark_symbols: list[str]
    metrics: PerformanceMetrics


class LogEvent(BaseModel):
    id: int
    at: str | None
    level: str
    service: str
    component: str
    logger: str
    event: str
    fields: dict[str, Any]


class LogPage(BaseModel):
    events: list[LogEvent]
    last_id: int = Field(description="pass as `after` to get only newer events")
