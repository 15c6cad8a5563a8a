"""Upstream behaviour over real sockets: round-robin, passive health, failures, timeouts, retries."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from api_gateway.roles import Role
from api_gateway.routing import ROUTES, Route
from api_gateway.upstreams import Replica, ReplicaSet
from tests.api_gateway.conftest import GatewayFactory, closed_url, echoed, fake_service, gateway_settings


def quick(routes: tuple[Route, ...], timeout: float) -> tuple[Route, ...]:
    """The real table with every timeout shortened, for tests that wait on one."""
    return tuple(dataclasses.replace(r, timeout=timeout) for r in routes)


async def test_reads_alternate_between_two_replicas(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader-a") as (a, url_a), fake_service("trader-b") as (b, url_b):
        gateway = await make_gateway(gateway_settings({"trader": [url_a, url_b]}))
        replicas = [
            echoed(await gateway.client.get("/api/v1/trade/positions", headers=gateway.auth(Role.VIEWER)))["replica"]
            for _ in range(6)
        ]

    assert sorted(replicas) == ["trader-a"] * 3 + ["trader-b"] * 3
    assert all(replicas[i] != replicas[i + 1] for i in range(5))
    assert len(a.hits) == len(b.hits) == 3


async def test_a_down_replica_is_skipped_during_its_cooldown_and_tried_again_after(
    make_gateway: GatewayFactory,
) -> None:
    async with fake_service("trader-a") as (a, url_a):
        dead = closed_url()
        gateway = await make_gateway(gateway_settings({"trader": [dead, url_a]}, upstream_cooldown_seconds=0.5))
        headers = gateway.auth(Role.TRADER)
        # Writes fail over too: a refused connection never delivered the request.
        answers = [await gateway.client.post("/api/v1/trade/buy", headers=headers, json={}) for _ in range(4)]
        replica_set = gateway.app.state.gateway.upstreams.get("trader")
        dead_replica = next(r for r in replica_set.replicas if r.url == dead)
        failures_during_cooldown = dead_replica.failures
        await asyncio.sleep(0.6)
        await gateway.client.get("/api/v1/trade/positions", headers=headers)
        await gateway.client.get("/api/v1/trade/positions", headers=headers)

    assert [r.status_code for r in answers] == [200] * 4
    assert len(a.hits) == 6
    assert failures_during_cooldown == 1  # tried once, then skipped
    assert dead_replica.failures == 2  # tried again once the cooldown was over


async def test_a_service_that_is_down_is_a_quick_clear_503(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_settings({"trader": [closed_url(), closed_url()]}))
    started = time.monotonic()
    response = await gateway.client.post("/api/v1/trade/execute", headers=gateway.auth(Role.TRADER), json={})

    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.json() == {
        "error": "upstream_unavailable",
        "message": "trader is unavailable",
        "detail": {"reason": "connection_failed"},
    }


async def test_a_service_that_does_not_answer_in_time_is_a_503_not_a_hang(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader") as (_, url):
        gateway = await make_gateway(gateway_settings({"trader": url}), routes=quick(ROUTES, 0.3))
        started = time.monotonic()
        response = await gateway.client.get("/api/v1/trade/positions?_delay=5", headers=gateway.auth(Role.VIEWER))
        elapsed = time.monotonic() - started

    assert elapsed < 2
    assert response.status_code == 503
    assert response.json()["message"] == "trader is unavailable"
    assert response.json()["detail"] == {"reason": "timeout"}


async def test_a_service_error_is_a_502_that_leaks_nothing(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader") as (fake, url):
        gateway = await make_gateway(gateway_settings({"trader": url}))
        response = await gateway.client.post(
            "/api/v1/trade/buy?_status=500", headers=gateway.auth(Role.TRADER), json={}
        )

    assert response.status_code == 502
    assert response.json() == {
        "error": "bad_gateway",
        "message": "trader failed to handle the request",
        "detail": {"reason": "upstream_error"},
    }
    assert "secret" not in response.text
    assert len(fake.hits) == 1  # a write is never sent twice


async def test_a_service_503_stays_a_503_without_its_body(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader") as (_, url):
        gateway = await make_gateway(gateway_settings({"trader": url}))
        response = await gateway.client.get("/api/v1/trade/pnl?_status=503", headers=gateway.auth(Role.VIEWER))

    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert "secret" not in response.text


async def test_an_idempotent_read_is_retried_on_the_other_replica_after_a_5xx(make_gateway: GatewayFactory) -> None:
    async with fake_service("a") as (a, url_a), fake_service("b") as (b, url_b):
        gateway = await make_gateway(gateway_settings({"trader": [url_a, url_b]}))
        response = await gateway.client.get("/api/v1/trade/pnl?_status=500", headers=gateway.auth(Role.VIEWER))

    # Both replicas fail here; the read went to each once and the answer is one 502.
    assert response.status_code == 502
    assert len(a.hits) == len(b.hits) == 1


async def test_a_write_that_timed_out_is_not_retried(make_gateway: GatewayFactory) -> None:
    async with fake_service("a") as (a, url_a), fake_service("b") as (b, url_b):
        gateway = await make_gateway(gateway_settings({"trader": [url_a, url_b]}), routes=quick(ROUTES, 0.3))
        response = await gateway.client.post(
            "/api/v1/trade/execute?_delay=2", headers=gateway.auth(Role.TRADER), json={}
        )

    assert response.status_code == 503
    assert len(a.hits) + len(b.hits) == 1


async def test_a_read_that_timed_out_is_retried_on_the_other_replica(make_gateway: GatewayFactory) -> None:
    async with fake_service("slow") as (slow, slow_url), fake_service("fast") as (_fast, fast_url):
        slow.delay = 2.0
        gateway = await make_gateway(gateway_settings({"trader": [slow_url, fast_url]}), routes=quick(ROUTES, 0.3))
        headers = gateway.auth(Role.VIEWER)
        answers = [await gateway.client.get("/api/v1/trade/history", headers=headers) for _ in range(2)]

    assert [r.status_code for r in answers] == [200, 200]
    assert [echoed(r)["replica"] for r in answers] == ["fast", "fast"]
    assert len(slow.hits) == 1  # timed out once, then skipped while cooling down


def test_when_every_replica_is_cooling_down_the_one_back_soonest_is_tried() -> None:
    now = [100.0]
    replicas = ReplicaSet("svc", [Replica("http://a"), Replica("http://b")], cooldown=10, monotonic=lambda: now[0])
    replicas.mark_failed(replicas.replicas[1], "test")
    now[0] += 1
    replicas.mark_failed(replicas.replicas[0], "test")

    assert [r.url for r in replicas.order()] == ["http://b", "http://a"]
    now[0] += 9.5
    assert next(r.url for r in replicas.order()) == "http://b"
