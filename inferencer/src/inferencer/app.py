"""The inferencer service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import torch
from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from inferencer.consumers import subscribe
from inferencer.routes import router
from inferencer.service import InferencerService
from inferencer.settings import InferencerSettings

DESCRIPTION = "Serves the promoted model and turns features into decisions."


def trader_client(runtime: Runtime, settings: InferencerSettings) -> httpx.AsyncClient | None:
    """HTTP client of the trader: ``INFERENCER_TRADER_URL``, or the runner's upstream in all-in-one mode."""
    url = settings.trader_url or runtime.extras.get("upstreams", {}).get("trader")
    if not url:
        return None
    return httpx.AsyncClient(base_url=url, timeout=settings.trader_timeout_seconds)


def create_app(
    runtime: Runtime, *, settings: InferencerSettings | None = None, trader: httpx.AsyncClient | None = None
) -> FastAPI:
    settings = settings or load_settings(InferencerSettings)
    assert settings is not None
    torch.set_num_threads(settings.torch_threads)
    client = trader if trader is not None else trader_client(runtime, settings)
    inferencer = InferencerService(
        settings=settings, sessionmaker=runtime.sessionmaker, clock=runtime.clock, trader=client
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await inferencer.start()
        await subscribe(runtime.bus, inferencer)
        try:
            yield
        finally:
            await inferencer.stop()
            if client is not None and trader is None:
                await client.aclose()

    app = build_app(
        "inferencer",
        runtime,
        title="trading-bot inferencer",
        description=DESCRIPTION,
        routers=[router],
        lifespan=lifespan,
    )
    app.state.inferencer = inferencer
    return app


service = ServiceSpec(
    name="inferencer", port=8004, create_app=create_app, settings=InferencerSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
