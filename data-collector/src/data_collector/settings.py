"""Settings of the data-collector service (environment prefix ``DATA_COLLECTOR_``)."""

from __future__ import annotations

from datetime import date, time
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from common.contracts import Symbol
from common.settings import ServiceSettings


def _all_channels() -> list[Literal["trades", "book"]]:
    return ["trades", "book"]


class DataCollectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_COLLECTOR_", extra="ignore", env_ignore_empty=True)

    port: int = 8001

    # Jobs.
    max_concurrent_jobs: int = Field(default=2, ge=1, le=32, description="backfill jobs run at once")
    resume_on_start: bool = Field(default=True, description="resume jobs a previous process left unfinished")
    daily_chunk_days: int = Field(
        default=140, ge=1, le=366, description="calendar days per daily-bar request: under 100 trading days, one page"
    )
    max_backfill_symbols: int = Field(default=500, ge=1, le=5000)
    max_backfill_years: int = Field(default=40, ge=1, le=100)

    # Streaming: ticks are published in batches, whichever comes first.
    tick_batch_size: int = Field(default=500, ge=1, le=50_000)
    tick_flush_seconds: float = Field(default=0.5, gt=0, le=60)

    # Scheduler (KST times of day on trading days, on the market's clock: a simulator's when it runs one).
    schedule_enabled: bool = False
    watchlist: list[Symbol] = Field(default_factory=list)
    preopen_backfill_at: time = time(8, 0)
    preopen_backfill_days: int = Field(default=10, ge=1, le=3660, description="daily bars looked back each morning")
    stream_start_at: time = time(8, 59)
    stream_stop_at: time = time(15, 31)
    stream_channels: list[Literal["trades", "book"]] = Field(default_factory=_all_channels)
    extra_holidays: list[date] = Field(default_factory=list, description="KRX closures missing from the table")

    @field_validator("watchlist")
    @classmethod
    def _unique_watchlist(cls, value: list[str]) -> list[str]:
        return sorted(set(value))
