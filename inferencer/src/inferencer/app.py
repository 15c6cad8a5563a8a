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
from inferencer.trader import TraderClient

DESCRIPTION = "Serves the promoted model and turns features into decisions."


def trader_client(runtime: Runtime, settings: InferencerSettings) -> TraderClient | None:
    """The trader's replicas from ``INFERENCER_TRADER_URL``, or the runner's mounted trader in all-in-one mode."""
    urls = settings.trader_urls()
    headers: dict[str, str] = {}
    if not urls:
        mounted = runtime.extras.get("upstreams", {}).get("trader")
        if not mounted:
            return None
        # Mounted services only answer calls that carry the runner's internal token.
        urls, headers = [mounted], dict(runtime.extras.get("internal_headers", {}))
    return TraderClient.for_urls(urls, timeout=settings.trader_timeout_seconds, headers=headers)


def create_app(
    runtime: Runtime, *, settings: InferencerSettings | None = None, trader: httpx.AsyncClient | None = None
) -> FastAPI:
    settings = settings or load_settings(InferencerSettings)
    assert settings is not None
    torch.set_num_threads(settings.torch_threads)
    client = TraderClient([trader]) if trader is not None else trader_client(runtime, settings)
    inferencer = InferencerService(
        settings=settings, engine=runtime.engine, sessionmaker=runtime.sessionmaker, clock=runtime.clock, trader=client
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
