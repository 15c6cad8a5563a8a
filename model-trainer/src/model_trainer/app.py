"""The model-trainer service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from model_trainer.jobs import JobRunner
from model_trainer.routes import router
from model_trainer.scheduler import RetrainScheduler
from model_trainer.service import TrainerService
from model_trainer.settings import ModelTrainerSettings

DESCRIPTION = "Trading environment, LSTM + A3C training, walk-forward evaluation, model registry."


def create_app(runtime: Runtime, settings: ModelTrainerSettings | None = None) -> FastAPI:
    settings = settings or load_settings(ModelTrainerSettings)
    trainer = TrainerService(settings, runtime.clock)
    jobs = JobRunner(runtime, settings)
    scheduler = RetrainScheduler(settings, runtime.clock, runtime.sessionmaker, trainer, jobs)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await jobs.start()
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.close()
            await jobs.close()

    app = build_app(
        "model-trainer",
        runtime,
        title="trading-bot model-trainer",
        description=DESCRIPTION,
        routers=[router],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.trainer = trainer
    app.state.jobs = jobs
    app.state.scheduler = scheduler
    return app


service = ServiceSpec(
    name="model-trainer", port=8003, create_app=create_app, settings=ModelTrainerSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
