"""The api-gateway service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, FastAPI, Request

from api_gateway.health import SystemHealth, system_health
from api_gateway.settings import ApiGatewaySettings
from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service

DESCRIPTION = "The single entry point /api/v1 in front of every service."


def create_app(runtime: Runtime) -> FastAPI:
    settings: ApiGatewaySettings = load_settings(ApiGatewaySettings)
    # The all-in-one runner mounts services in-process and tells the gateway where.
    upstreams: dict[str, str] = runtime.extras.get("upstreams", settings.upstreams)
    router = APIRouter(prefix="/api/v1")

    @router.get("/system/health", response_model=SystemHealth, tags=["system"], summary="Readiness of every service")
    async def get_system_health(request: Request) -> SystemHealth:
        client: httpx.AsyncClient = request.app.state.http
        return await system_health(client, upstreams, settings.health_timeout_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
            app.state.http = client
            yield

    return build_app(
        "api-gateway", runtime, title="trading-bot API", description=DESCRIPTION, routers=[router], lifespan=lifespan
    )


service = ServiceSpec(
    name="api-gateway", port=8000, create_app=create_app, settings=ApiGatewaySettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
