"""The model-trainer service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, run_service
from model_trainer.settings import ModelTrainerSettings

DESCRIPTION = "Trading environment, LSTM + A3C training, walk-forward evaluation, model registry."


def create_app(runtime: Runtime) -> FastAPI:
    return build_app("model-trainer", runtime, title="trading-bot model-trainer", description=DESCRIPTION)


service = ServiceSpec(
    name="model-trainer", port=8003, create_app=create_app, settings=ModelTrainerSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
