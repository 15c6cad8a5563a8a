"""Tables of the data processor: quarantined records, bar flags, processing jobs and fundamentals.

Created by migrations ``0002_data_processor`` and ``0008_fundamentals``. ``quarantine`` is keyed by the message a record
came in and its position there, so a redelivered message cannot quarantine a record twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Dialect, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from common.db.models import Base, JsonDocument


class ExactDecimal(TypeDecorator[Decimal]):
    """``NUMERIC`` on PostgreSQL; decimal text on SQLite, which has no exact decimal type."""

    impl = String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(asdecimal=True))
        return dialect.type_descriptor(String(40))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class QuarantinedRecord(Base):
    """A tick or bar that failed validation, kept with why (never silently dropped)."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_symbol_ts", "symbol", "ts"),)

    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_kind: Mapped[str] = mapped_column(String(8))
    symbol: Mapped[str | None] = mapped_column(String(32))
    timeframe: Mapped[str | None] = mapped_column(String(4))
    ts: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text)
    record: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    quarantined_at: Mapped[datetime]


class BarFlag(Base):
    """A fact about a stored bar that consumers must not overlook: halt, gap, corporate action, amendment."""

    __tablename__ = "bar_flags"

    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(4), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    flag: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class ProcessingJob(Base):
    """A feature recomputation requested through ``POST /data/process``, with its progress."""

    __tablename__ = "processing_jobs"
    __table_args__ = (CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    symbols: Mapped[list[str]] = mapped_column(JsonDocument)
    timeframe: Mapped[str] = mapped_column(String(4))
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer)
    features_written: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class Fundamentals(Base):
    """The fundamentals of a broker quote (``market.quote.v1``), one row per symbol and fetch time.

    Feature rows look up the latest row whose ``ts`` is at or before the bar's close, so a row
    never leaks into bars that closed before it was fetched.
    """

    __tablename__ = "fundamentals"

    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    price: Mapped[int] = mapped_column(BigInteger)
    per: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    pbr: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    eps: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    bps: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    market_cap: Mapped[int | None] = mapped_column(BigInteger)
    foreign_ownership_pct: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    listed_shares: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime]
