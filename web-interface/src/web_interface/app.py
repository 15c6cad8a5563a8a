"""The web-interface service: server-rendered pages that read everything through the gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from web_interface.settings import WebInterfaceSettings

DESCRIPTION = "The dashboard: pages rendered on the server from the gateway's API."
PACKAGE_DIR = Path(__file__).parent
templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")


def create_app(runtime: Runtime) -> FastAPI:
    settings: WebInterfaceSettings = load_settings(WebInterfaceSettings)
    gateway_url: str = runtime.extras.get("gateway_url", settings.gateway_url)
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, summary="System status page")
    async def index(request: Request) -> HTMLResponse:
        client: httpx.AsyncClient = request.app.state.gateway
        health: dict[str, object] | None = None
        error: str | None = None
        try:
            response = await client.get("/api/v1/system/health")
            response.raise_for_status()
            health = response.json()
        except httpx.HTTPError as exc:
            error = f"the gateway at {gateway_url} did not answer ({type(exc).__name__})"
        return templates.TemplateResponse(
            request, "index.html", {"health": health, "error": error, "mode": runtime.mode.value}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=settings.gateway_timeout_seconds) as client:
            app.state.gateway = client
            yield

    app = build_app(
        "web-interface",
        runtime,
        title="trading-bot dashboard",
        description=DESCRIPTION,
        routers=[router],
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")
    return app


service = ServiceSpec(
    name="web-interface", port=8080, create_app=create_app, settings=WebInterfaceSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
