"""Settings of the data-processor service (environment prefix ``DATA_PROCESSOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class DataProcessorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_PROCESSOR_", extra="ignore", env_ignore_empty=True)

    port: int = 8002
    # Queue names are fixed in production; tests and benchmarks give each run its own.
    tick_queue: str = Field(default="data-processor.ticks", min_length=1, max_length=200)
    bar_queue: str = Field(default="data-processor.bars", min_length=1, max_length=200)
    consume: bool = True
    publish_features: bool = True
