"""The api-gateway service: ``create_app(runtime)`` and its console script.

The single entry point ``/api/v1``: authentication (JWTs and API keys) and roles, per-client
rate limits, CORS for the dashboard only, a body size limit, the routing table forwarded to
the services (``routing.py``), the platform settings, and one OpenAPI document for it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import structlog
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from api_gateway.accounts import Accounts
from api_gateway.dependencies import GatewayState
from api_gateway.health import service_health
from api_gateway.middleware import BodySizeLimit
from api_gateway.openapi import ServiceDocuments, build_document
from api_gateway.platform_settings import PlatformSettingsService
from api_gateway.proxy import Forwarder
from api_gateway.ratelimit import TokenBucketLimiter
from api_gateway.routes import build_router, forwarding_routes
from api_gateway.routing import ROUTES, Route
from api_gateway.security import TokenIssuer
from api_gateway.settings import ApiGatewaySettings, is_placeholder
from api_gateway.upstreams import Upstreams
from common.errors import Operational, TradebotError
from common.runtime import Runtime
from common.service import ReadinessCheck, ServiceSpec, build_app, load_settings, run_service

log = structlog.get_logger(__name__)

DESCRIPTION = "The single entry point /api/v1 in front of every service."
# In all-in-one mode the services are mounted here; their requests come from the gateway.
MOUNTED_SERVICES = "/services/"
# Idle upstream connections are closed before the services' servers close them (uvicorn: 5 s),
# so that a request is rarely written into a connection the other side is closing.
UPSTREAM_KEEPALIVE_SECONDS = 4.0


def create_app(runtime: Runtime) -> FastAPI:
    settings: ApiGatewaySettings = load_settings(ApiGatewaySettings)
    return build_gateway(runtime, settings)


def build_gateway(runtime: Runtime, settings: ApiGatewaySettings, routes: tuple[Route, ...] = ROUTES) -> FastAPI:
    """The gateway app for explicit settings (``create_app`` loads them from the environment)."""
    # The all-in-one runner mounts services in-process and tells the gateway where.
    upstreams = Upstreams(
        runtime.extras.get("upstreams", settings.upstreams), cooldown=settings.upstream_cooldown_seconds
    )
    gateway = GatewayState(
        settings=settings,
        runtime=runtime,
        accounts=Accounts(runtime.clock, _token_issuer(settings), key_cache_seconds=settings.key_cache_seconds),
        platform_settings=PlatformSettingsService(runtime.clock),
        limiter=TokenBucketLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        login_limiter=TokenBucketLimiter(settings.login_rate_limit_per_minute, settings.login_rate_limit_burst),
        upstreams=upstreams,
    )
    documents = ServiceDocuments(upstreams, settings.openapi_fetch_timeout_seconds, settings.openapi_cache_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _bootstrap_admin(gateway)
        connector = aiohttp.TCPConnector(
            limit=settings.upstream_max_connections, keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS
        )
        # In all-in-one mode the mounted services accept only requests carrying the runtime's token.
        internal_headers: dict[str, str] = runtime.extras.get("internal_headers", {})
        async with aiohttp.ClientSession(
            connector=connector,
            headers=internal_headers,
            # A forwarded body keeps the caller's Content-Type or none, never aiohttp's guess.
            skip_auto_headers=("Content-Type",),
            # Cookies are the callers' business: never kept and replayed across callers.
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            app.state.http = session
            gateway.forwarder = Forwarder(session, upstreams, settings.upstream_connect_timeout_seconds)
            # In the background: in all-in-one mode the services answer only once this server listens.
            fetching = asyncio.create_task(documents.refresh(session), name="api_gateway.openapi_fetch")
            try:
                yield
            finally:
                fetching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(fetching, timeout=5)
                gateway.forwarder = None

    readiness: dict[str, ReadinessCheck] = {}
    if settings.readyz_includes_upstreams:
        readiness.update({f"upstream:{name}": _upstream_check(gateway, name) for name in upstreams.names()})
    app = build_app(
        "api-gateway",
        runtime,
        title="trading-bot API",
        description=DESCRIPTION,
        routers=[build_router()],
        lifespan=lifespan,
        readiness=readiness,
    )
    app.state.gateway = gateway
    # First in line: they are the hot path, and a plain route is matched far more cheaply than
    # the routes of FastAPI's included routers (their paths do not overlap).
    app.router.routes[:0] = forwarding_routes(gateway, routes)
    _serve_openapi(app, routes, documents)
    # Innermost first: the size limit runs inside the request-id middleware (so a 413 carries
    # its ids); CORS is outermost so preflights and error responses get its headers.
    app.user_middleware.append(Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, exempt=(MOUNTED_SERVICES,)))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[settings.dashboard_origin],
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID", "X-Correlation-ID"],
        expose_headers=["X-Request-ID", "X-Correlation-ID", "Retry-After"],
        max_age=600,
    )
    return app


def _token_issuer(settings: ApiGatewaySettings) -> TokenIssuer:
    secret = settings.jwt_secret.get_secret_value()
    if is_placeholder(settings.jwt_secret):
        # Only reachable in development/test (settings refuse it elsewhere): a per-process
        # secret rather than a publicly known one; tokens do not survive a restart.
        log.warning("api_gateway.jwt_secret_ephemeral", hint="set API_GATEWAY_JWT_SECRET")
        secret = secrets.token_urlsafe(48)
    return TokenIssuer(secret, settings.jwt_issuer, timedelta(minutes=settings.jwt_ttl_minutes))


async def _bootstrap_admin(gateway: GatewayState) -> None:
    settings = gateway.settings
    username, password = settings.bootstrap_admin_username, settings.bootstrap_admin_password
    if username is None or password is None:
        async with gateway.runtime.sessionmaker() as session:
            from api_gateway.repository import count_users

            if await count_users(session) == 0:
                log.warning(
                    "api_gateway.no_users",
                    hint="set API_GATEWAY_BOOTSTRAP_ADMIN_USERNAME/PASSWORD or run tradebot-gateway-admin create-user",
                )
        return
    if is_placeholder(password):
        if not settings.development:
            raise Operational("API_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD is a placeholder; set a real password")
        log.warning("api_gateway.bootstrap_password_placeholder", username=username)
    try:
        async with gateway.runtime.sessionmaker() as session:
            await gateway.accounts.bootstrap_admin(session, username, password.get_secret_value())
            await session.commit()
    except TradebotError as exc:
        raise Operational(f"cannot create the first admin: {exc.message}") from exc


def _upstream_check(gateway: GatewayState, service: str) -> ReadinessCheck:
    async def check() -> None:
        replicas = gateway.upstreams.sets[service]
        forwarder = gateway.require_forwarder()
        health = await service_health(forwarder.session, replicas, gateway.settings.health_timeout_seconds)
        if health.status != "ready":
            raise TradebotError(f"{service} is {health.status}")

    return check


def _serve_openapi(app: FastAPI, routes: tuple[Route, ...], documents: ServiceDocuments) -> None:
    """Replace FastAPI's ``/openapi.json`` with the merged document (refreshed on demand)."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != app.openapi_url]

    def document() -> dict[str, object]:
        return build_document(app, routes, documents.documents)

    app.openapi = document  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        session: aiohttp.ClientSession | None = getattr(request.app.state, "http", None)
        if session is not None:
            await documents.refresh(session)
        return JSONResponse(document())


service = ServiceSpec(
    name="api-gateway", port=8000, create_app=create_app, settings=ApiGatewaySettings, description=DESCRIPTION
)


class ErrorAccessLinesOnly(logging.Filter):
    """Drops uvicorn's access lines of answers below 400, before they are formatted.

    A line per request was the largest single part of the gateway's own time (about 0.2 ms of
    0.5 ms of CPU per forwarded request, measured 2026-11-21: formatting twice, redaction, a
    write). A forwarded request is logged by the service that answered it, under the same
    request id; what the gateway refuses (credentials, roles, rate limits, sizes, unknown
    paths) and what failed upstream keep their lines here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record arguments: client, method, path, HTTP version, status.
        args = record.args
        return not (isinstance(args, tuple) and len(args) == 5 and isinstance(args[4], int) and args[4] < 400)


def main() -> None:
    # Distributed mode only: in all-in-one mode this logger carries every service's lines.
    logging.getLogger("uvicorn.access").addFilter(ErrorAccessLinesOnly())
    run_service(service)
