"""Settings of the data-collector service (environment prefix ``DATA_COLLECTOR_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class DataCollectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DATA_COLLECTOR_", extra="ignore", env_ignore_empty=True)

    port: int = 8001
