"""Tables of the data processor: quarantined records, bar flags and processing jobs.

Created by migration ``0002_data_processor``. ``quarantine`` is keyed by the message a record
came in and its position there, so a redelivered message cannot quarantine a record twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db.models import Base, JsonDocument


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
