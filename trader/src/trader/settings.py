"""Settings of the trader service (environment prefix ``TRADER_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class TraderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRADER_", extra="ignore", env_ignore_empty=True)

    port: int = 8005
