"""The data-collector service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, run_service
from data_collector.settings import DataCollectorSettings

DESCRIPTION = "KIS REST backfill and WebSocket streams, published to the bus."


def create_app(runtime: Runtime) -> FastAPI:
    return build_app("data-collector", runtime, title="trading-bot data-collector", description=DESCRIPTION)


service = ServiceSpec(
    name="data-collector", port=8001, create_app=create_app, settings=DataCollectorSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
