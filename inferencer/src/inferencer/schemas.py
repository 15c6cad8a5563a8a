"""Request and response models of the inferencer's HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.contracts import Symbol

from .models import DecisionRecord


class PredictRequest(BaseModel):
    """Features to decide on (oldest first, at least the model's window), or none: the symbol's latest."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    timeframe: Literal["1m", "1d"] | None = None
    features: list[dict[str, float | None]] | None = Field(default=None, min_length=1, max_length=10_000)
    position: float | None = Field(default=None, ge=0, le=1, description="current exposure; default: the last decided")


class PredictionView(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    symbol: str
    model_id: str
    model_version: str
    action_index: int
    target_exposure: float
    confidence: float
    value: float
    probabilities: list[float]
    source: Literal["given", "latest"]


class DecisionView(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: uuid.UUID
    symbol: str
    timeframe: str
    feature_ts: datetime
    model_version: str
    target_exposure: float
    confidence: float
    trade_status: str | None = Field(
        description="pending/error: waiting in the outbox; else the trader's answer, rejected, superseded or expired"
    )
    order_id: uuid.UUID | None
    error: str | None
    attempts: int

    @classmethod
    def of(cls, record: DecisionRecord) -> DecisionView:
        return cls(
            id=record.id,
            symbol=record.symbol,
            timeframe=record.timeframe,
            feature_ts=record.feature_ts,
            model_version=record.model_version,
            target_exposure=record.target_exposure,
            confidence=record.confidence,
            trade_status=record.trade_status,
            order_id=record.order_id,
            error=record.error,
            attempts=record.attempts,
        )


class ModelView(BaseModel):
    loaded: bool
    model: dict[str, Any] | None
