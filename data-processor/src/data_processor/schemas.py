"""Request and response models of the data-processor API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from common.contracts import Symbol, Timeframe


class ProcessRequest(BaseModel):
    """Recompute the stored features of these symbols' bars in ``[start, end]`` (open ends: all)."""

    model_config = ConfigDict(extra="forbid")

    symbols: Annotated[list[Symbol], Field(min_length=1, max_length=200)]
    timeframe: Timeframe = "1d"
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ProcessRequest:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class JobView(BaseModel):
    id: uuid.UUID
    status: Literal["queued", "running", "succeeded", "failed"]
    symbols: list[str]
    timeframe: str
    start: datetime | None
    end: datetime | None
    total: int = Field(description="bars in the range when the job started")
    done: int = Field(description="bars whose features have been recomputed")
    progress: float = Field(description="done / total, 1.0 when there was nothing to do")
    features_written: int
    error: str | None
    created_at: datetime
    updated_at: datetime


class FeatureRow(BaseModel):
    ts: datetime
    values: dict[str, float | None]


class FeaturesPage(BaseModel):
    symbol: str
    timeframe: str
    feature_set: str
    rows: list[FeatureRow]
    next_cursor: datetime | None = Field(description="pass as ``cursor`` for the next page; null on the last")


class IndicatorPoint(BaseModel):
    ts: datetime
    close: int
    value: float | None


class IndicatorResponse(BaseModel):
    symbol: str
    timeframe: str
    indicator: str
    window: int
    points: list[IndicatorPoint]
