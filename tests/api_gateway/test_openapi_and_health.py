"""One OpenAPI document for the public API, and aggregated health over every replica."""

from __future__ import annotations

from typing import Any

from api_gateway.roles import Role
from api_gateway.routing import ROUTES
from tests.api_gateway.conftest import Gateway, GatewayFactory, closed_url, fake_service, gateway_settings

TRADER_OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "trader", "version": "1"},
    "paths": {
        "/trade/buy": {
            "post": {
                "summary": "buy",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OrderRequest"}}},
                },
                "responses": {
                    "200": {
                        "description": "accepted",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
                    },
                    "500": {"description": "internal"},
                },
            }
        }
    },
    "components": {
        "schemas": {
            "OrderRequest": {
                "type": "object",
                "properties": {"side": {"$ref": "#/components/schemas/Side"}, "qty": {"type": "integer"}},
            },
            "Side": {"type": "string", "enum": ["buy", "sell"]},
            "Order": {"type": "object", "properties": {"id": {"type": "string"}}},
            "Unused": {"type": "object"},
        }
    },
}


async def test_the_document_covers_own_routes_and_every_table_route_with_its_role(gateway: Gateway) -> None:
    document = (await gateway.client.get("/openapi.json")).json()
    paths = document["paths"]

    assert "/api/v1/auth/token" in paths and "/api/v1/dashboard/settings" in paths
    for route in ROUTES:
        operation = paths[route.public_path][route.method.lower()]
        assert operation["summary"] == route.summary
        assert operation["x-required-role"] == route.role.value
        assert {"OAuth2Password": [route.role.value]} in operation["security"]
        assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == set(route.params)
        assert {"401", "403", "429", "502", "503"} <= set(operation["responses"])
    schemes = document["components"]["securitySchemes"]
    assert schemes["OAuth2Password"]["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert paths["/api/v1/admin/keys"]["post"]["x-required-role"] == "admin"


async def test_a_services_schemas_are_merged_in_under_its_name(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader", openapi=TRADER_OPENAPI) as (_, url):
        gateway = await make_gateway(gateway_settings({"trader": url, "inferencer": closed_url()}))
        document = (await gateway.client.get("/openapi.json")).json()

    buy = document["paths"]["/api/v1/trade/buy"]["post"]
    schemas = document["components"]["schemas"]
    assert buy["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/trader.OrderRequest"
    }
    assert buy["responses"]["200"]["description"] == "accepted"
    assert buy["responses"]["502"]["description"].startswith("the service failed")
    assert "500" not in buy["responses"]
    assert schemas["trader.OrderRequest"]["properties"]["side"] == {"$ref": "#/components/schemas/trader.Side"}
    assert {"trader.Side", "trader.Order"} <= set(schemas) and "trader.Unused" not in schemas
    # A service that does not answer keeps the table's generic description.
    predict = document["paths"]["/api/v1/inference/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"] == {}


async def test_system_health_reports_every_replica(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader") as (_, url):
        gateway = await make_gateway(gateway_settings({"trader": [url, closed_url()], "inferencer": closed_url()}))
        health = (await gateway.client.get("/api/v1/system/health")).json()
        gateway_ready = await gateway.client.get("/readyz")

    assert health["status"] == "degraded"
    assert health["services"]["trader"]["status"] == "ready"
    assert [r["status"] for r in health["services"]["trader"]["replicas"]] == ["ready", "unreachable"]
    assert health["services"]["inferencer"]["status"] == "unreachable"
    # By default the gateway's own readiness does not depend on the services.
    assert gateway_ready.status_code == 200


async def test_readyz_can_include_every_upstream(make_gateway: GatewayFactory) -> None:
    async with fake_service("trader") as (_, url):
        healthy = await make_gateway(gateway_settings({"trader": url}, readyz_includes_upstreams=True))
        ready = await healthy.client.get("/readyz")
    down = await make_gateway(gateway_settings({"trader": closed_url()}, readyz_includes_upstreams=True))
    not_ready = await down.client.get("/readyz")

    assert ready.status_code == 200 and ready.json()["checks"]["upstream:trader"] == "ok"
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["upstream:trader"].startswith("failed: trader is unreachable")
    assert (await down.client.get("/healthz")).status_code == 200


async def test_health_endpoints_need_no_credentials(gateway: Gateway) -> None:
    for path in ("/healthz", "/readyz", "/api/v1/system/health", "/openapi.json"):
        assert (await gateway.client.get(path)).status_code == 200, path
    assert (await gateway.client.get("/api/v1/auth/me", headers=gateway.auth(Role.VIEWER))).status_code == 200
