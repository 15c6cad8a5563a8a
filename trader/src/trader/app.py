"""The trader service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, run_service
from trader.settings import TraderSettings

DESCRIPTION = "Order management, positions and P&L, risk engine, kill switch."


def create_app(runtime: Runtime) -> FastAPI:
    return build_app("trader", runtime, title="trading-bot trader", description=DESCRIPTION)


service = ServiceSpec(name="trader", port=8005, create_app=create_app, settings=TraderSettings, description=DESCRIPTION)


def main() -> None:
    run_service(service)
