"""The routing table: each role's allowed and forbidden routes, and what is forwarded."""

from __future__ import annotations

import re

import pytest

from api_gateway.roles import Role
from api_gateway.routing import ROUTES, Route
from tests.api_gateway.conftest import FakeService, Gateway, GatewayFactory, echoed, gateway_settings

# The gateway's own routes and the least role each needs.
OWN_ROUTES: list[tuple[str, str, Role]] = [
    ("GET", "/api/v1/auth/me", Role.VIEWER),
    ("GET", "/api/v1/dashboard/settings", Role.VIEWER),
    ("PUT", "/api/v1/dashboard/settings", Role.ADMIN),
    ("GET", "/api/v1/admin/users", Role.ADMIN),
    ("POST", "/api/v1/admin/users", Role.ADMIN),
    ("DELETE", "/api/v1/admin/users/nobody", Role.ADMIN),
    ("GET", "/api/v1/admin/keys", Role.ADMIN),
    ("POST", "/api/v1/admin/keys", Role.ADMIN),
    ("DELETE", "/api/v1/admin/keys/00000000-0000-0000-0000-000000000000", Role.ADMIN),
]


def concrete(route: Route) -> str:
    return re.sub(r"\{[^}]+\}", "abc-123", route.public_path)


def test_the_table_covers_the_public_api_of_design_section_7() -> None:
    table = {(r.method, r.path) for r in ROUTES}
    expected = {
        ("GET", "/data/market"), ("POST", "/data/collect"), ("GET", "/data/collect/{job_id}"),
        ("POST", "/data/process"), ("GET", "/features"), ("GET", "/indicator/ma"), ("GET", "/indicator/rsi"),
        ("POST", "/model/train"), ("GET", "/model/status/{job_id}"), ("GET", "/model/models"),
        ("POST", "/model/models/{id}/promote"), ("POST", "/inference/predict"), ("POST", "/trade/execute"),
        ("POST", "/trade/buy"), ("POST", "/trade/sell"), ("GET", "/trade/status/{order_id}"),
        ("POST", "/trade/orders/{order_id}/cancel"), ("GET", "/trade/history"), ("GET", "/trade/positions"),
        ("GET", "/trade/pnl"), ("GET", "/trade/kill-switch"), ("PUT", "/trade/kill-switch"),
        ("GET", "/dashboard/performance"), ("GET", "/dashboard/logs"),
    }  # fmt: skip
    assert expected <= table
    # Every mutation needs trader or more; promotion and the kill switch need admin; reads only retry.
    for route in ROUTES:
        assert route.retry == (route.method == "GET")
        if route.method != "GET":
            assert route.role in (Role.TRADER, Role.ADMIN), route
    admin_only = {(r.method, r.path) for r in ROUTES if r.role is Role.ADMIN}
    assert admin_only == {
        ("POST", "/model/models/{id}/promote"),
        ("PUT", "/trade/kill-switch"),
        ("POST", "/trade/kill-switch"),
        ("POST", "/trade/reconcile"),
    }


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
async def test_each_role_reaches_exactly_the_routes_its_rank_allows(gateway: Gateway, role: Role) -> None:
    wrong: list[str] = []
    for route in ROUTES:
        response = await gateway.client.request(route.method, concrete(route), headers=gateway.auth(role), json={})
        allowed = role.allows(route.role)
        if allowed and response.status_code != 200:
            wrong.append(f"{route.method} {route.path}: expected 200, got {response.status_code}")
        if not allowed and response.status_code != 403:
            wrong.append(f"{route.method} {route.path}: expected 403, got {response.status_code}")
    for method, path, needed in OWN_ROUTES:
        response = await gateway.client.request(method, path, headers=gateway.auth(role))
        if role.allows(needed) and response.status_code in (401, 403):
            wrong.append(f"{method} {path}: expected access, got {response.status_code}")
        if not role.allows(needed) and response.status_code != 403:
            wrong.append(f"{method} {path}: expected 403, got {response.status_code}")
    assert wrong == []


async def test_forbidden_answer_names_the_role_needed(gateway: Gateway) -> None:
    response = await gateway.client.put("/api/v1/trade/kill-switch", headers=gateway.auth(Role.TRADER), json={})

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "admin" in response.json()["message"]


async def test_every_route_needs_credentials(gateway: Gateway) -> None:
    statuses = {
        f"{r.method} {r.path}": (await gateway.client.request(r.method, concrete(r))).status_code for r in ROUTES
    }
    assert set(statuses.values()) == {401}
    response = await gateway.client.get("/api/v1/trade/positions")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_jwt_from_the_password_flow_carries_the_users_role(gateway: Gateway) -> None:
    admin = {"Authorization": f"Bearer {await gateway.token()}"}
    created = await gateway.client.post(
        "/api/v1/admin/users", json={"username": "tina", "password": "tina-password-1", "role": "trader"}, headers=admin
    )
    assert created.status_code == 201, created.text
    trader = {"Authorization": f"Bearer {await gateway.token('tina', 'tina-password-1')}"}

    assert (await gateway.client.post("/api/v1/trade/buy", json={}, headers=trader)).status_code == 200
    assert (await gateway.client.put("/api/v1/trade/kill-switch", json={}, headers=trader)).status_code == 403
    me = (await gateway.client.get("/api/v1/auth/me", headers=trader)).json()
    assert me == {"kind": "user", "name": "tina", "role": "trader"}


async def test_request_is_forwarded_with_ids_and_identity_but_without_credentials(
    gateway: Gateway, fakes: dict[str, tuple[FakeService, str]]
) -> None:
    response = await gateway.client.post(
        "/api/v1/trade/orders/ord-42/cancel?reason=user&x=%20y",
        headers={
            **gateway.auth(Role.TRADER),
            "X-Request-ID": "req-abc",
            "X-Tradebot-Role": "admin",
            "X-Tradebot-Subject": "user:mallory",
            "Cookie": "session=1",
            "Idempotency-Key": "k-1",
        },
        json={"qty": 3},
    )

    assert response.status_code == 200
    seen = echoed(response)
    assert seen["replica"] == "trader"
    assert seen["method"] == "POST"
    assert seen["path"] == "/trade/orders/ord-42/cancel"
    assert seen["query"] == "reason=user&x=%20y"
    assert seen["body"] == '{"qty":3}'
    headers = seen["headers"]
    assert headers["x-request-id"] == "req-abc" == response.headers["x-request-id"]
    assert headers["x-correlation-id"] == "req-abc"
    assert headers["x-tradebot-role"] == "trader"
    assert headers["x-tradebot-subject"].startswith("key:")
    assert headers["x-tradebot-user"] == headers["x-tradebot-subject"]
    assert headers["idempotency-key"] == "k-1"
    assert "authorization" not in headers and "cookie" not in headers and "x-api-key" not in headers


async def test_path_parameters_are_encoded_for_the_service(gateway: Gateway) -> None:
    response = await gateway.client.get("/api/v1/trade/status/a%3Fb%23c", headers=gateway.auth(Role.VIEWER))

    assert echoed(response)["path"] == "/trade/status/a%3Fb%23c"


async def test_the_public_put_of_the_kill_switch_is_the_traders_post(gateway: Gateway) -> None:
    response = await gateway.client.put(
        "/api/v1/trade/kill-switch", headers=gateway.auth(Role.ADMIN), json={"engaged": True}
    )

    assert (echoed(response)["method"], echoed(response)["path"]) == ("POST", "/trade/kill-switch")


async def test_dashboard_reads_go_to_the_trader(gateway: Gateway) -> None:
    performance = await gateway.client.get("/api/v1/dashboard/performance", headers=gateway.auth(Role.VIEWER))
    logs = await gateway.client.get("/api/v1/dashboard/logs?limit=5", headers=gateway.auth(Role.VIEWER))

    assert (echoed(performance)["replica"], echoed(performance)["path"]) == ("trader", "/performance")
    assert (echoed(logs)["replica"], echoed(logs)["path"], echoed(logs)["query"]) == ("trader", "/logs", "limit=5")


async def test_service_4xx_answers_pass_through_with_their_body(gateway: Gateway) -> None:
    not_found = await gateway.client.get("/api/v1/model/status/nope?_status=404", headers=gateway.auth(Role.VIEWER))
    invalid = await gateway.client.post("/api/v1/trade/buy?_status=422", headers=gateway.auth(Role.TRADER), json={})

    assert not_found.status_code == 404
    assert echoed(not_found)["path"] == "/model/status/nope"
    assert invalid.status_code == 422


async def test_unknown_paths_and_methods_are_4xx(gateway: Gateway) -> None:
    headers = gateway.auth(Role.ADMIN)
    assert (await gateway.client.get("/api/v1/no/such/thing", headers=headers)).status_code == 404
    assert (await gateway.client.delete("/api/v1/trade/buy", headers=headers)).status_code == 405
    assert (await gateway.client.head("/api/v1/trade/positions", headers=headers)).status_code == 405


async def test_forwarded_requests_are_counted_under_their_table_route(gateway: Gateway) -> None:
    await gateway.client.get("/api/v1/trade/status/ord-7", headers=gateway.auth(Role.VIEWER))
    metrics = (await gateway.client.get("/metrics")).text

    assert 'route="/api/v1/trade/status/{order_id}"' in metrics


async def test_an_unconfigured_service_is_a_clear_503(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_settings({}))
    response = await gateway.client.get("/api/v1/trade/positions", headers=gateway.auth(Role.VIEWER))

    assert response.status_code == 503
    assert response.json()["error"] == "upstream_unavailable"
    assert response.json()["message"] == "trader is unavailable"
