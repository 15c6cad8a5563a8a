"""The standard service app: health, readiness, metrics, request ids, lifespan order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from common.runtime import Runtime
from common.service import build_app
from common.settings import Mode, RuntimeSettings


def runtime_for(url: str) -> Runtime:
    return Runtime.from_settings(RuntimeSettings(mode=Mode.ALLINONE, database_url=url))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def test_health_ready_and_metrics(database_url: str) -> None:
    async with runtime_for(database_url) as runtime:
        async with serving(build_app("trader", runtime, title="t")) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok", "service": "trader"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
            metrics = await client.get("/metrics")
            assert (
                'tradebot_http_requests_total{method="GET",route="/readyz",service="trader",status="200"}'
                in metrics.text
            )


async def test_readyz_fails_when_a_dependency_is_down(sqlite_url: str) -> None:
    async with runtime_for(sqlite_url) as runtime:
        app = build_app("trader", runtime, title="t")
        async with serving(app) as client:
            await runtime.bus.close()
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["bus"].startswith("failed")


async def test_readyz_runs_service_checks(sqlite_url: str) -> None:
    async def broker_check() -> None:
        raise ConnectionError("no route")

    async with runtime_for(sqlite_url) as runtime:
        async with serving(build_app("trader", runtime, title="t", readiness={"broker": broker_check})) as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "failed: ConnectionError"


async def test_request_and_correlation_ids_are_echoed(sqlite_url: str) -> None:
    async with runtime_for(sqlite_url) as runtime, serving(build_app("trader", runtime, title="t")) as client:
        given = await client.get("/healthz", headers={"X-Correlation-ID": "corr-7"})
        fresh = await client.get("/healthz")
        hostile = await client.get("/healthz", headers={"X-Request-ID": "bad id\r\nx: y"})
    assert given.headers["x-correlation-id"] == "corr-7"
    assert len(fresh.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != "bad id\r\nx: y"


async def test_service_lifespan_runs_inside_and_readyz_turns_false_on_shutdown(sqlite_url: str) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    async with runtime_for(sqlite_url) as runtime:
        app = build_app("trader", runtime, title="t", lifespan=lifespan)
        async with serving(app) as client:
            assert events == ["start"]
        assert events == ["start", "stop"]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            assert (await client.get("/readyz")).status_code == 503


def test_distributed_mode_requires_a_broker() -> None:
    from common.errors import Operational

    with pytest.raises(Operational, match="TRADEBOT_AMQP_URL"):
        Runtime.from_settings(RuntimeSettings(mode=Mode.DISTRIBUTED))
