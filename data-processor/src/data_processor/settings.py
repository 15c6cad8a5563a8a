"""Settings of the data-processor service (environment prefix ``DATA_PROCESSOR_``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings
from data_processor.features import FEATURE_SETS

DEFAULT_FEATURE_SETS = ("ta.v1", "mt-ohlcv-v1")


class DataProcessorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_PROCESSOR_", extra="ignore", env_ignore_empty=True)

    port: int = 8002
    # Queue names are fixed in production; tests and benchmarks give each run its own.
    tick_queue: str = Field(default="data-processor.ticks", min_length=1, max_length=200)
    bar_queue: str = Field(default="data-processor.bars", min_length=1, max_length=200)
    quote_queue: str = Field(default="data-processor.quotes", min_length=1, max_length=200)
    # Unacknowledged tick batches held at once (the bus's prefetch applies to the other queues).
    # Each is a few MB once parsed, and a few in flight keep the database busy: more only costs memory.
    tick_prefetch: int = Field(default=4, ge=1, le=1_000)
    consume: bool = True
    publish_features: bool = True
    # Every closed bar gets one ``features`` row and one ``features.v1`` message per set listed here.
    feature_sets: list[str] = Field(default_factory=lambda: list(DEFAULT_FEATURE_SETS), min_length=1)

    @field_validator("feature_sets")
    @classmethod
    def _known_sets(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FEATURE_SETS))
        if unknown:
            raise ValueError(f"unknown feature sets {unknown}; known: {sorted(FEATURE_SETS)}")
        return list(dict.fromkeys(value))
