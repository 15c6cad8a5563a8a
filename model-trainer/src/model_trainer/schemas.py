"""Request and response models of the model-trainer API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from model_trainer.config import TrainingConfig

__all__ = ["Curves", "JobAccepted", "JobStatus", "ModelOut", "PromotionOut", "RegimeRow", "TrainingConfig"]


class JobAccepted(BaseModel):
    job_id: uuid.UUID
    status: str


class Curves(BaseModel):
    """Learning curves for the dashboard; each list is aligned with ``steps`` of its kind."""

    steps: list[int] = []
    seed: list[int] = []
    reward: list[float | None] = []
    policy_loss: list[float | None] = []
    value_loss: list[float | None] = []
    entropy: list[float | None] = []
    val_steps: list[int] = []
    val_seed: list[int] = []
    val_sharpe: list[float | None] = []


class JobStatus(BaseModel):
    job_id: uuid.UUID
    status: str
    trigger: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    interrupted_at: datetime | None
    attempts: int
    cancel_requested: bool
    error: str | None
    progress: dict[str, Any]
    curves: Curves
    model_ids: list[str]
    summary: dict[str, Any] | None
    config: dict[str, Any]


class ModelOut(BaseModel):
    id: uuid.UUID
    version: str
    job_id: uuid.UUID | None
    status: str
    created_at: datetime
    promoted_at: datetime | None
    data_hash: str
    symbols: list[str]
    ranges: dict[str, Any]
    feature_set: str
    feature_names: list[str]
    timeframe: str
    seed: int
    code_version: str
    artifact_uri: str
    metrics: dict[str, Any]
    config: dict[str, Any]


class PromotionOut(BaseModel):
    model: ModelOut
    previous: uuid.UUID | None


class RegimeRow(BaseModel):
    symbol: str
    date: str
    regime: int
    probabilities: list[float]
