"""Request and response models of the data-collector API."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from common.contracts import Symbol, Timeframe

Channel = Literal["trades", "book"]
JobKind = Literal["backfill", "stream"]
JobStatus = Literal["queued", "running", "completed", "failed", "cancelled", "interrupted"]

# A job that still counts: asking for it again returns it instead of starting another run.
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "running", "interrupted", "completed"})
FINISHED_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


def _daily_only() -> list[Timeframe]:
    return ["1d"]


def _all_channels() -> list[Channel]:
    return ["trades", "book"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("symbols", mode="after", check_fields=False)
    @classmethod
    def _normalise_symbols(cls, value: list[str]) -> list[str]:
        # Order and repetition do not change what is collected, so they do not change the job.
        return sorted(set(value))


class BackfillRequest(_Request):
    """Collect historical bars of ``symbols`` from ``start`` to ``end`` (KST days, inclusive)."""

    kind: Literal["backfill"]
    symbols: list[Symbol] = Field(min_length=1, max_length=5000, examples=[["005930", "000660"]])
    start: date = Field(examples=["2013-01-01"])
    end: date = Field(examples=["2017-12-29"])
    timeframes: list[Timeframe] = Field(
        default_factory=_daily_only,
        min_length=1,
        description="1d: daily bars over the whole range; 1m: KIS serves one-minute bars of the current day only",
    )

    @field_validator("timeframes", mode="after")
    @classmethod
    def _normalise_timeframes(cls, value: list[Timeframe]) -> list[Timeframe]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _ordered_range(self) -> BackfillRequest:
        if self.start > self.end:
            raise ValueError("start must not be after end")
        return self


class StreamRequest(_Request):
    """Stream real-time trades and/or order book of ``symbols`` until ``until`` or cancellation."""

    kind: Literal["stream"]
    symbols: list[Symbol] = Field(min_length=1, max_length=41, examples=[["005930"]])
    channels: list[Channel] = Field(default_factory=_all_channels, min_length=1)
    until: AwareDatetime | None = Field(default=None, description="stop then; absent: run until cancelled")

    @field_validator("channels", mode="after")
    @classmethod
    def _normalise_channels(cls, value: list[Channel]) -> list[Channel]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _within_registration_cap(self) -> StreamRequest:
        registrations = len(self.symbols) * len(self.channels)
        if registrations > 41:
            raise ValueError(
                f"{len(self.symbols)} symbols x {len(self.channels)} channels = {registrations} real-time "
                "registrations; KIS allows 41 per session"
            )
        return self


CollectRequest = Annotated[BackfillRequest | StreamRequest, Field(discriminator="kind")]
collect_request_adapter: TypeAdapter[BackfillRequest | StreamRequest] = TypeAdapter(CollectRequest)


def idempotency_key(request: BackfillRequest | StreamRequest) -> str:
    """sha256 of the normalised request: equal requests, however spelled, share one key."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Progress(BaseModel):
    symbols_total: int
    symbols_done: int
    chunks_total: int
    chunks_done: int
    percent: float = Field(description="chunks done / chunks total (stream jobs: elapsed / planned time)")
    bars_published: int
    ticks_published: int
    current_symbol: str | None
    current_date: date | None
    eta_seconds: float | None


class JobView(BaseModel):
    id: uuid.UUID
    kind: JobKind
    status: JobStatus
    params: dict[str, Any]
    progress: Progress
    cancel_requested: bool
    resumes: int = Field(description="how many times the job was resumed after an interruption")
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = Field(description="start of the current run")
    finished_at: datetime | None
    events: list[EventView] = Field(default_factory=list, description="latest events, newest first")


class EventView(BaseModel):
    id: int
    job_id: uuid.UUID | None
    kind: str = Field(description="gap, reconnect, disconnect, interrupted, resumed, retry, error, no_data, …")
    at: datetime
    symbol: str | None
    detail: dict[str, Any]


class JobList(BaseModel):
    jobs: list[JobView]


class EventList(BaseModel):
    events: list[EventView]


class BookTop(BaseModel):
    ask: int | None
    ask_quantity: int | None
    bid: int | None
    bid_quantity: int | None
    at: datetime | None


class SnapshotView(BaseModel):
    symbol: str
    price: int | None
    change: int | None = Field(description="against the previous close, KRW")
    change_rate: Decimal | None = Field(description="percent against the previous close")
    volume: int | None = Field(description="shares traded so far today")
    traded_at: datetime | None
    book: BookTop
    source: str = Field(description="stream or quote: where the last update came from")
    updated_at: datetime


class MarketView(BaseModel):
    snapshots: list[SnapshotView]
    missing: list[str] = Field(description="requested symbols the collector has not seen yet")


JobView.model_rebuild()
