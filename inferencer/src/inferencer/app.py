"""The inferencer service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, run_service
from inferencer.settings import InferencerSettings

DESCRIPTION = "Serves the promoted model and turns features into decisions."


def create_app(runtime: Runtime) -> FastAPI:
    return build_app("inferencer", runtime, title="trading-bot inferencer", description=DESCRIPTION)


service = ServiceSpec(
    name="inferencer", port=8004, create_app=create_app, settings=InferencerSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
