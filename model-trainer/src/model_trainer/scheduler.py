"""Scheduled retraining (off by default): a weekly job at a KST wall time, on the injected clock."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import KST, Clock
from model_trainer.config import TrainingConfig
from model_trainer.jobs import JobRunner
from model_trainer.service import TrainerService
from model_trainer.settings import ModelTrainerSettings

log = structlog.get_logger(__name__)


def next_run(now: datetime, settings: ModelTrainerSettings) -> datetime:
    """The first scheduled instant strictly after ``now`` (aware UTC in, aware out)."""
    local = now.astimezone(KST)
    candidate = local.replace(
        hour=settings.schedule_time.hour, minute=settings.schedule_time.minute, second=0, microsecond=0
    )
    candidate += timedelta(days=(settings.schedule_weekday - local.weekday()) % 7)
    if candidate <= local:
        candidate += timedelta(days=7)
    return candidate


class RetrainScheduler:
    def __init__(
        self,
        settings: ModelTrainerSettings,
        clock: Clock,
        sessionmaker: async_sessionmaker[AsyncSession],
        service: TrainerService,
        runner: JobRunner,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sessionmaker = sessionmaker
        self.service = service
        self.runner = runner
        self.config = TrainingConfig.model_validate_json(settings.schedule_config) if settings.schedule_config else None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self.settings.schedule_enabled:
            return
        if self.config is None:
            log.error("model_trainer.schedule_disabled", reason="MODEL_TRAINER_SCHEDULE_CONFIG is not set")
            return
        self._task = asyncio.create_task(self._loop(), name="model-trainer.schedule")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=5)

    async def run_once(self) -> None:
        """Wait for the next scheduled instant, then queue one job."""
        due = next_run(self.clock.now(), self.settings)
        await self.clock.sleep(max(0.0, (due - self.clock.now()).total_seconds()))
        assert self.config is not None
        async with self.sessionmaker.begin() as session:
            job_id = await self.service.submit(session, self.config, trigger="schedule")
        self.runner.kick()
        log.info("model_trainer.scheduled_job", job_id=str(job_id), due=due.isoformat())

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("model_trainer.schedule_failed")
                await self.clock.sleep(60)
