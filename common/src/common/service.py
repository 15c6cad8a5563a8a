"""The service contract: ``create_app(runtime) -> FastAPI`` built on one standard app.

Every service gets the same skeleton from ``build_app``: error handlers, request/correlation
ids, ``/healthz`` (alive), ``/readyz`` (database, bus and the service's own checks reachable;
false as soon as shutdown starts), ``/metrics`` in Prometheus format, and a lifespan that starts
the service's own resources after the runtime's and stops them in reverse order. ``run_service``
is the console-script entry point of distributed mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from pydantic_settings import BaseSettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.db import ping
from common.errors import Operational, TradebotError, install_error_handlers
from common.runtime import Runtime
from common.settings import ServiceSettings

log = structlog.get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]

HTTP_REQUESTS = Counter(
    "tradebot_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "tradebot_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"


@dataclass(frozen=True)
class ServiceSpec:
    """What the runners need to know about a service; each service exports one as ``service``."""

    name: str
    port: int
    create_app: Callable[[Runtime], FastAPI]
    settings: type[ServiceSettings]
    description: str = ""


@dataclass
class ServiceState:
    """What ``build_app`` keeps on ``app.state.service``."""

    name: str
    runtime: Runtime
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    shutting_down: bool = False


class RequestContextMiddleware:
    """Binds request and correlation ids to the log context and echoes them in the response."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope.get("headers", [])}
        request_id = _safe_id(headers.get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
        correlation_id = _safe_id(headers.get(CORRELATION_ID_HEADER)) or request_id
        started = time.perf_counter()
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(REQUEST_ID_HEADER.encode(), request_id.encode())]
                extra.append((CORRELATION_ID_HEADER.encode(), correlation_id.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        with structlog.contextvars.bound_contextvars(
            request_id=request_id, correlation_id=correlation_id, method=scope["method"], path=scope["path"]
        ):
            try:
                await self.app(scope, receive, send_with_ids)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                HTTP_REQUESTS.labels(self.service, scope["method"], template, str(status)).inc()
                HTTP_LATENCY.labels(self.service, scope["method"], template).observe(time.perf_counter() - started)


def _safe_id(value: str | None) -> str | None:
    """Accept a caller's id only if it is short and plain (it ends up in logs and headers)."""
    if value and len(value) <= 128 and all(c.isalnum() or c in "-_.:" for c in value):
        return value
    return None


def build_app(
    name: str,
    runtime: Runtime,
    *,
    title: str,
    description: str = "",
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    readiness: dict[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The standard app every service is built on."""
    state = ServiceState(name=name, runtime=runtime)

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.shutting_down = False
        async with contextlib.AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            log.info("service.started", service=name)
            try:
                yield
            finally:
                state.shutting_down = True
                log.info("service.stopping", service=name)

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=app_lifespan)
    app.state.service = state
    app.state.runtime = runtime
    app.state.sessionmaker = runtime.sessionmaker
    state.readiness["database"] = lambda: ping(runtime.engine)
    state.readiness["bus"] = _bus_check(runtime)
    state.readiness.update(readiness or {})
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=name)
    app.include_router(_operations_router(state))
    for router in routers:
        app.include_router(router)
    return app


def _bus_check(runtime: Runtime) -> ReadinessCheck:
    async def check() -> None:
        if not await runtime.bus.healthy():
            raise TradebotError("message bus not connected")

    return check


def _operations_router(state: ServiceState) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": state.name}

    @router.get("/readyz", summary="The service can do its work: its dependencies answer")
    async def readyz() -> JSONResponse:
        if state.shutting_down:
            return JSONResponse({"status": "shutting_down", "service": state.name, "checks": {}}, status_code=503)
        names = list(state.readiness)
        results = await asyncio.gather(
            *(asyncio.wait_for(state.readiness[n](), timeout=3) for n in names), return_exceptions=True
        )
        checks: dict[str, str] = {}
        for check_name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                message = result.message if isinstance(result, TradebotError) else type(result).__name__
                checks[check_name] = f"failed: {message}"
            else:
                checks[check_name] = "ok"
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "not_ready", "service": state.name, "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def load_settings(settings_type: type[BaseSettings], **overrides: Any) -> Any:
    """Load settings, turning a validation failure into one clear operational error."""
    from pydantic import ValidationError

    try:
        return settings_type(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise Operational(f"invalid {settings_type.__name__}: {problems}") from None


class ManagedServer(uvicorn.Server):
    """A uvicorn server whose runner handles signals (uvicorn's own re-raises them on exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def stop_on_signals(*servers: uvicorn.Server) -> None:
    """SIGINT/SIGTERM ask every server for a graceful shutdown."""

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


def run_service(spec: ServiceSpec) -> None:
    """Console-script entry point: run one service in distributed mode until SIGINT/SIGTERM."""
    from common.kis.clock import KisClockSettings, market_clock_from_settings
    from common.logging import configure
    from common.settings import Mode, RuntimeSettings, secret_values

    try:
        runtime_settings: RuntimeSettings = load_settings(RuntimeSettings, mode=Mode.DISTRIBUTED)
        service_settings: ServiceSettings = load_settings(spec.settings)
        kis_clock_settings: KisClockSettings = load_settings(KisClockSettings)
    except TradebotError as exc:
        sys.stderr.write(f"tradebot-{spec.name}: {exc.message}\n")
        raise SystemExit(2) from None
    configure(
        spec.name,
        json_output=runtime_settings.log_json,
        level=runtime_settings.log_level,
        mode=runtime_settings.mode.value,
        logstash_host=runtime_settings.logstash_host,
        logstash_port=runtime_settings.logstash_port,
        secrets=[*secret_values(runtime_settings), *secret_values(service_settings)],
    )
    port = service_settings.port or spec.port

    async def serve() -> None:
        runtime = Runtime.from_settings(runtime_settings, name=f"tradebot-{spec.name}")
        # A simulator replaying the past runs on its own clock: KIS clients and session rules follow it.
        kis_clock = await market_clock_from_settings(kis_clock_settings)
        if kis_clock is not None:
            runtime.extras["kis_clock"] = kis_clock
        async with runtime:
            app = spec.create_app(runtime)
            config = uvicorn.Config(
                app,
                host=service_settings.host,
                port=port,
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=int(runtime_settings.shutdown_drain_timeout_seconds) or None,
            )
            server = ManagedServer(config)
            stop_on_signals(server)
            log.info("service.listening", service=spec.name, url=f"http://{service_settings.host}:{port}")
            await server.serve()
            if not server.started:
                raise Operational(f"could not listen on {service_settings.host}:{port}")

    try:
        asyncio.run(serve())
    except TradebotError as exc:
        log.error("service.failed", service=spec.name, error=exc.code, message=exc.message)
        raise SystemExit(1) from None
