"""Settings of the inferencer service (environment prefix ``INFERENCER_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class InferencerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INFERENCER_", extra="ignore", env_ignore_empty=True)

    port: int = 8004
