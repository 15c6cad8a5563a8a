"""The inferencer's table (migrations ``0006_inferencer``, ``0009_inferencer_outbox``): every decision.

A decision row is also the outbox entry of its trader call (``trade_status`` ``pending`` or
``error`` until the trader answers) and carries the recurrent state after it (``state``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base
from common.db.models import JsonDocument

# Trade statuses that mean "the trader has not answered for this decision yet".
PENDING = "pending"
RETRYING = "error"
UNSENT = (PENDING, RETRYING)


class DecisionRecord(Base):
    """One decision: what the model saw (feature timestamp), what it chose, and what the trader did."""

    __tablename__ = "decisions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(7))
    timeframe: Mapped[str] = mapped_column(String(4))
    feature_ts: Mapped[datetime]
    feature_set: Mapped[str] = mapped_column(String(64))
    close: Mapped[int] = mapped_column(BigInteger)
    model_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    action_index: Mapped[int] = mapped_column(Integer)
    target_exposure: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[list[Any]] = mapped_column(JsonDocument)
    created_at: Mapped[datetime]
    trade_status: Mapped[str | None] = mapped_column(String(32))
    order_id: Mapped[uuid.UUID | None]
    error: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"), default=0)
    next_attempt_at: Mapped[datetime | None]


Index("ix_decisions_symbol_feature_ts", DecisionRecord.symbol, DecisionRecord.feature_ts.desc())
Index(
    "ix_decisions_model_symbol_feature_ts",
    DecisionRecord.model_version,
    DecisionRecord.symbol,
    DecisionRecord.timeframe,
    DecisionRecord.feature_ts.desc(),
)
Index("ix_decisions_trade_status", DecisionRecord.trade_status)
