"""Settings of the model-trainer service (environment prefix ``MODEL_TRAINER_``)."""

from __future__ import annotations

from datetime import time
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings


class ModelTrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODEL_TRAINER_", extra="ignore", env_ignore_empty=True)

    port: int = 8003
    # File store of model artifacts: <artifact_root>/<model_id>/{manifest.json,policy.pt,...}
    artifact_root: Path = Path("var/models")
    # A csv data source must sit under one of these folders (the API never reads arbitrary paths).
    data_dirs: list[Path] = Field(default_factory=list)
    # How the job process is started; the A3C workers' start method is a job parameter.
    job_start_method: str = Field(default="spawn", pattern="^(spawn|forkserver|fork)$")
    # After a restart, interrupted jobs run again from the start (True) or fail visibly (False).
    resume_interrupted: bool = True
    max_attempts: int = Field(default=3, ge=1)
    cancel_grace_seconds: float = Field(default=20.0, gt=0)
    # Scheduled retraining (off by default): weekday 0=Mon … 6=Sun, KST wall time.
    schedule_enabled: bool = False
    schedule_weekday: int = Field(default=4, ge=0, le=6)
    schedule_time: time = time(16, 30)
    schedule_config: str | None = Field(default=None, description="TrainingConfig JSON for scheduled jobs")
