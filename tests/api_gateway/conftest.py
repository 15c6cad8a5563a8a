"""Gateway test kit: fake upstream services on real loopback sockets and a gateway factory.

A fake upstream answers every path by echoing what it received (method, path, query, body,
headers) and its own name, so a test sees exactly what the gateway forwarded. Query
parameters steer it: ``_status`` sets the answer's status, ``_delay`` makes it slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from api_gateway.app import build_gateway
from api_gateway.roles import Role
from api_gateway.routing import ROUTES, Route
from api_gateway.settings import ApiGatewaySettings
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings

SERVICES = ("data-collector", "data-processor", "model-trainer", "inferencer", "trader")
ADMIN_PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class FakeService:
    name: str
    hits: list[dict[str, Any]] = field(default_factory=list)
    openapi: dict[str, Any] | None = None
    # Seconds every answer takes (a slow replica), on top of any ``_delay``.
    delay: float = 0.0

    def app(self) -> FastAPI:
        app = FastAPI(openapi_url=None)

        @app.get("/readyz")
        async def readyz() -> dict[str, Any]:
            return {"status": "ready", "service": self.name, "checks": {"database": "ok"}}

        @app.get("/openapi.json")
        async def openapi() -> JSONResponse:
            if self.openapi is None:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            return JSONResponse(self.openapi)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def echo(path: str, request: Request) -> JSONResponse:
            body = await request.body()
            seen = {
                "replica": self.name,
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "body": body.decode(errors="replace"),
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
            self.hits.append(seen)
            delay = self.delay + float(request.query_params.get("_delay", "0"))
            if delay:
                await asyncio.sleep(delay)
            status = int(request.query_params.get("_status", "200"))
            if status >= 500:
                return JSONResponse({"error": "boom", "message": "secret internal trace at db.py:42"}, status)
            return JSONResponse(seen, status_code=status)

        return app


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """Serve ``app`` on 127.0.0.1 (an OS-chosen port) until the block ends."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("fake server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def fake_service(name: str, openapi: dict[str, Any] | None = None) -> AsyncIterator[tuple[FakeService, str]]:
    fake = FakeService(name, openapi=openapi)
    async with serve(fake.app()) as (url, _):
        yield fake, url


def gateway_settings(upstreams: Mapping[str, str | list[str]], **overrides: Any) -> ApiGatewaySettings:
    values: dict[str, Any] = {
        "upstreams": dict(upstreams),
        "jwt_secret": SecretStr("test-secret-" + "x" * 40),
        "bootstrap_admin_username": "admin",
        "bootstrap_admin_password": SecretStr(ADMIN_PASSWORD),
        "rate_limit_per_minute": 600_000,
        "rate_limit_burst": 10_000,
        "login_rate_limit_per_minute": 600_000,
        "login_rate_limit_burst": 10_000,
        "upstream_cooldown_seconds": 30,
        "openapi_cache_seconds": 0,
    }
    values.update(overrides)
    return ApiGatewaySettings(**values)


@dataclass
class Gateway:
    """A running gateway app, a client for it, and credentials for each role."""

    app: FastAPI
    runtime: Runtime
    client: httpx.AsyncClient
    keys: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    async def login(self, username: str, password: str) -> httpx.Response:
        return await self.client.post("/api/v1/auth/token", data={"username": username, "password": password})

    async def token(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        response = await self.login(username, password)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[GatewayFactory]:
    """``await make_gateway(settings, routes=...)``: a started gateway with a key per role."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(settings: ApiGatewaySettings, routes: tuple[Route, ...] = ROUTES) -> Gateway:
            runtime_settings = RuntimeSettings(
                mode=Mode.ALLINONE,
                database_url=SecretStr(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"),
            )
            runtime = await stack.enter_async_context(Runtime.from_settings(runtime_settings))
            app = build_gateway(runtime, settings, routes)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)
            )
            gateway = Gateway(app=app, runtime=runtime, client=client)
            token = await gateway.token()
            for role in Role:
                response = await client.post(
                    "/api/v1/admin/keys",
                    json={"name": f"{role.value} key", "role": role.value},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert response.status_code == 201, response.text
                gateway.keys[role] = response.json()["key"]
            return gateway

        yield make


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, tuple[FakeService, str]]]:
    """One echoing fake per service, each on its own port."""
    async with contextlib.AsyncExitStack() as stack:
        running = {name: await stack.enter_async_context(fake_service(name)) for name in SERVICES}
        yield running


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, fakes: dict[str, tuple[FakeService, str]]) -> Gateway:
    return await make_gateway(gateway_settings({name: url for name, (_, url) in fakes.items()}))


def echoed(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(response.text)
    return body
