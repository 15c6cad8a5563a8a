"""Settings of the data-processor service (environment prefix ``DATA_PROCESSOR_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class DataProcessorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_PROCESSOR_", extra="ignore", env_ignore_empty=True)

    port: int = 8002
