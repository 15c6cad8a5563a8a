"""The web-interface service: server-rendered pages that read everything through the gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from common.errors import Operational
from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from web_interface.formatting import FILTERS
from web_interface.gateway import Gateway, GatewayError, NotLoggedIn
from web_interface.routes import CsrfRejected, Web, build_router
from web_interface.session import SessionCookie
from web_interface.settings import WebInterfaceSettings

DESCRIPTION = "The dashboard: pages rendered on the server from the gateway's API."
PACKAGE_DIR = Path(__file__).parent


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")
    templates.env.filters.update(FILTERS)
    return templates


def wants_html(request: Request) -> bool:
    return request.url.path != "/events" and not request.url.path.endswith(".csv")


def create_app(
    runtime: Runtime,
    *,
    settings: WebInterfaceSettings | None = None,
    gateway_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The dashboard app; ``gateway_transport`` replaces the network to the gateway (tests)."""
    settings = settings or load_settings(WebInterfaceSettings)
    assert settings is not None
    gateway_url: str = runtime.extras.get("gateway_url", settings.gateway_url)
    try:
        cookie = SessionCookie(settings)
    except ValueError as exc:
        raise Operational(str(exc)) from None
    templates = make_templates()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            base_url=gateway_url, timeout=settings.gateway_timeout_seconds, transport=gateway_transport
        ) as client:
            app.state.web = Web(
                settings=settings,
                gateway=Gateway(client, gateway_url),
                cookie=cookie,
                templates=templates,
                mode=runtime.mode.value,
            )
            yield

    app = build_app(
        "web-interface",
        runtime,
        title="trading-bot dashboard",
        description=DESCRIPTION,
        routers=[build_router()],
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")

    # Pages answer every failure of the gateway with a page that says what happened (never a 500):
    # an ended session goes back to the login page; the rest render the error page.
    async def on_not_logged_in(request: Request, exc: Exception) -> Response:
        if not wants_html(request):
            return JSONResponse({"error": "unauthorized", "message": "log in again"}, status_code=401)
        response = RedirectResponse(f"/login?next={quote(request.url.path)}&notice=expired", status_code=303)
        cookie.clear(response)
        return response

    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        if not wants_html(request):
            return JSONResponse({"error": "gateway", "message": exc.message}, status_code=exc.status)
        web: Web = request.app.state.web
        return web.render(request, "error.html", {"message": exc.message, "status": exc.status}, status=exc.status)

    async def on_csrf(request: Request, exc: Exception) -> Response:
        web: Web = request.app.state.web
        message = "This form has expired (or came from another site). Reload the page and try again."
        return web.render(request, "error.html", {"message": message, "status": 403}, status=403)

    app.add_exception_handler(NotLoggedIn, on_not_logged_in)
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(CsrfRejected, on_csrf)
    return app


service = ServiceSpec(
    name="web-interface", port=8080, create_app=create_app, settings=WebInterfaceSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
