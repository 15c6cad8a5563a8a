"""Tables of the data collector: collection jobs, what happened during them, and the market snapshot.

Created by migration ``0003_data_collector``. ``collection_jobs.active_key`` carries the job's
idempotency key while the job counts (queued, running, interrupted, completed) and is cleared
when it fails or is cancelled: its unique constraint is what makes the same request, sent twice
or by two replicas at once, yield one job — on SQLite and PostgreSQL alike (NULLs never clash).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db.models import Base, JsonDocument

JOB_KINDS = ("backfill", "stream")
JOB_STATUSES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class CollectionJob(Base):
    """One ``POST /data/collect`` request: its parameters, state, progress and per-symbol checkpoint."""

    __tablename__ = "collection_jobs"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_in(JOB_KINDS)})", name="kind"),
        CheckConstraint(f"status IN ({_in(JOB_STATUSES)})", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), index=True)
    active_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    symbols_total: Mapped[int] = mapped_column(Integer)
    symbols_done: Mapped[int] = mapped_column(Integer)
    chunks_total: Mapped[int] = mapped_column(Integer)
    chunks_done: Mapped[int] = mapped_column(Integer)
    bars_published: Mapped[int] = mapped_column(BigInteger)
    ticks_published: Mapped[int] = mapped_column(BigInteger)
    current_symbol: Mapped[str | None] = mapped_column(String(7))
    current_day: Mapped[date | None]
    # {"005930": {"1d": "2016-03-31"}}: the last day whose chunk was published, per symbol and timeframe.
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    resumes: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    # The current run: ETA is measured from here, so time spent before an interruption does not count.
    run_started_at: Mapped[datetime | None]
    run_chunks_at_start: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime | None]


class CollectionEvent(Base):
    """Something a job's consumers must not overlook: a gap, a reconnect, a retry, an interruption."""

    __tablename__ = "collection_events"
    __table_args__ = (Index("ix_collection_events_job_id_at", "job_id", "at"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("collection_jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime]
    symbol: Mapped[str | None] = mapped_column(String(7))
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class MarketSnapshot(Base):
    """The latest state of one symbol as the collector last saw it (trade, quote or book)."""

    __tablename__ = "market_snapshots"

    symbol: Mapped[str] = mapped_column(String(7), primary_key=True)
    price: Mapped[int | None] = mapped_column(BigInteger)
    change: Mapped[int | None] = mapped_column(BigInteger)
    volume: Mapped[int | None] = mapped_column(BigInteger)
    traded_at: Mapped[datetime | None]
    best_ask: Mapped[int | None] = mapped_column(BigInteger)
    best_ask_quantity: Mapped[int | None] = mapped_column(BigInteger)
    best_bid: Mapped[int | None] = mapped_column(BigInteger)
    best_bid_quantity: Mapped[int | None] = mapped_column(BigInteger)
    book_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime]
