"""The data-processor service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, run_service
from data_processor.settings import DataProcessorSettings

DESCRIPTION = "Validation, cleaning, aggregation, indicators and regimes; writes ticks, bars and features."


def create_app(runtime: Runtime) -> FastAPI:
    return build_app("data-processor", runtime, title="trading-bot data-processor", description=DESCRIPTION)


service = ServiceSpec(
    name="data-processor", port=8002, create_app=create_app, settings=DataProcessorSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
