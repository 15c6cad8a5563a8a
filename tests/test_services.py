"""Each of the seven services is installed, discoverable, and serves the standard contract."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from common.allinone import discover_services
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings

SERVICES = {
    "api-gateway": 8000,
    "data-collector": 8001,
    "data-processor": 8002,
    "model-trainer": 8003,
    "inferencer": 8004,
    "trader": 8005,
    "web-interface": 8080,
}


def test_all_seven_services_are_installed_with_their_ports() -> None:
    specs = discover_services()
    assert {name: spec.port for name, spec in specs.items()} == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_has_its_console_script(name: str) -> None:
    assert (Path(sys.executable).parent / f"tradebot-{name}").is_file()


@pytest.mark.parametrize("name", sorted(SERVICES))
async def test_each_service_answers_health_and_readiness(name: str, sqlite_url: str) -> None:
    spec = discover_services()[name]
    settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=sqlite_url)  # type: ignore[arg-type]
    async with Runtime.from_settings(settings) as runtime:
        app = spec.create_app(runtime)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
                assert (await client.get("/healthz")).json()["service"] == name
                assert (await client.get("/readyz")).status_code == 200
                openapi = (await client.get("/openapi.json")).json()
    assert openapi["info"]["title"].startswith("trading-bot")
