"""Settings of the model-trainer service (environment prefix ``MODEL_TRAINER_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class ModelTrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODEL_TRAINER_", extra="ignore", env_ignore_empty=True)

    port: int = 8003
