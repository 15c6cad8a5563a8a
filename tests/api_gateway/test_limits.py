"""Per-client rate limits, failed-login throttling, CORS for the dashboard only, body size."""

from __future__ import annotations

import httpx

from api_gateway.ratelimit import TokenBucketLimiter
from api_gateway.roles import Role
from tests.api_gateway.conftest import FakeService, Gateway, GatewayFactory, gateway_settings

DASHBOARD = "http://127.0.0.1:8080"


def test_a_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(per_minute=60, burst=2, monotonic=lambda: now[0])

    assert [limiter.try_take("a"), limiter.try_take("a")] == [None, None]
    assert limiter.try_take("a") == 1.0
    assert limiter.try_take("b") is None  # another client has its own bucket
    now[0] += 1.0
    assert limiter.try_take("a") is None


def test_the_limiter_forgets_the_least_recently_seen_clients_first() -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=1, max_clients=2, monotonic=lambda: 0.0)
    limiter.try_take("a")
    limiter.try_take("b")
    limiter.try_take("c")  # "a" is forgotten: its bucket is full again

    assert limiter.try_take("a") is None
    assert limiter.try_take("c") is not None


async def test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    make_gateway: GatewayFactory, fakes: dict[str, tuple[FakeService, str]]
) -> None:
    upstreams = {name: url for name, (_, url) in fakes.items()}
    gateway = await make_gateway(gateway_settings(upstreams, rate_limit_per_minute=6, rate_limit_burst=3))
    trader, viewer = gateway.auth(Role.TRADER), gateway.auth(Role.VIEWER)
    # The fixture used the admin key (one request per key) while creating the others.
    statuses = [(await gateway.client.get("/api/v1/trade/pnl", headers=trader)).status_code for _ in range(4)]
    limited = await gateway.client.get("/api/v1/trade/pnl", headers=trader)
    other = await gateway.client.get("/api/v1/trade/pnl", headers=viewer)

    assert statuses == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200


async def test_repeated_failed_logins_are_throttled_per_address(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(gateway_settings({}, login_rate_limit_per_minute=1, login_rate_limit_burst=5))
    # The fixture's own login took one token.
    statuses = [(await gateway.login("admin", "not-the-password")).status_code for _ in range(5)]

    assert statuses[:2] == [401, 401]
    assert statuses[-1] == 429
    guessed_key = await gateway.client.get("/api/v1/auth/me", headers={"X-API-Key": "tb_00000000_" + "x" * 43})
    assert guessed_key.status_code == 429


async def test_cors_allows_only_the_dashboard_origin(gateway: Gateway) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = await gateway.client.options("/api/v1/trade/pnl", headers={"Origin": DASHBOARD, **preflight})
    refused = await gateway.client.options("/api/v1/trade/pnl", headers={"Origin": "https://evil.example", **preflight})
    simple = await gateway.client.get(
        "/api/v1/trade/pnl", headers={"Origin": "https://evil.example", **gateway.auth(Role.VIEWER)}
    )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == DASHBOARD
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(
    make_gateway: GatewayFactory, fakes: dict[str, tuple[FakeService, str]]
) -> None:
    upstreams = {name: url for name, (_, url) in fakes.items()}
    gateway = await make_gateway(gateway_settings(upstreams, max_body_bytes=2048))
    trader = gateway.auth(Role.TRADER)
    big = b"x" * 4096

    async def chunks() -> object:
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    declared = await gateway.client.post("/api/v1/trade/buy", headers=trader, content=big)
    streamed = await gateway.client.post("/api/v1/trade/buy", headers=trader, content=chunks())  # type: ignore[arg-type]
    own_route = await gateway.client.put("/api/v1/dashboard/settings", headers=gateway.auth(Role.ADMIN), content=big)
    small = await gateway.client.post("/api/v1/trade/buy", headers=trader, json={"qty": 1})

    assert (declared.status_code, declared.json()["error"]) == (413, "payload_too_large")
    assert streamed.status_code == 413
    assert own_route.status_code == 413
    assert small.status_code == 200
    assert len(fakes["trader"][0].hits) == 1


async def test_a_malformed_content_length_is_refused_as_invalid_input(gateway: Gateway) -> None:
    transport = gateway.client._transport
    assert isinstance(transport, httpx.ASGITransport)
    request = httpx.Request(
        "POST", "http://gateway/api/v1/trade/buy", headers={**gateway.auth(Role.TRADER), "Content-Length": "abc"}
    )
    response = await transport.handle_async_request(request)

    assert response.status_code == 422
