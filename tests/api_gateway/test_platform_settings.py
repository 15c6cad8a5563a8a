"""``/dashboard/settings``: typed, validated, admin-only to change, secrets write-only."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from api_gateway.models import SettingsRecord
from api_gateway.roles import Role
from tests.api_gateway.conftest import Gateway

WEBHOOK = "https://discord.com/api/webhooks/123/very-secret-token"


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "risk": {
            "max_position_krw": 5_000_000,
            "max_gross_exposure_krw": 20_000_000,
            "max_order_value_krw": 2_000_000,
            "daily_loss_limit_krw": 500_000,
            "max_drawdown_pct": "7.5",
            "max_orders_per_minute": 10,
        },
        "watchlist": ["005930", "000660"],
        "schedules": [{"job": "collect", "at": "15:40", "days": ["mon", "fri"]}],
        "notifications": {"events": ["fill", "kill_switch"], "discord_webhook_url": WEBHOOK},
    }
    base.update(changes)
    return base


async def test_defaults_are_served_before_anything_is_saved(gateway: Gateway) -> None:
    response = await gateway.client.get("/api/v1/dashboard/settings", headers=gateway.auth(Role.VIEWER))

    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 0 and body["watchlist"] == []
    assert body["notifications"]["discord_webhook_configured"] is False


async def test_an_admin_replaces_the_settings_and_secrets_are_never_returned(gateway: Gateway) -> None:
    admin = gateway.auth(Role.ADMIN)
    saved = await gateway.client.put("/api/v1/dashboard/settings", json=document(), headers=admin)
    read = await gateway.client.get("/api/v1/dashboard/settings", headers=gateway.auth(Role.VIEWER))

    assert saved.status_code == 200, saved.text
    for response in (saved, read):
        assert "very-secret-token" not in response.text
        body = response.json()
        assert body["notifications"]["discord_webhook_configured"] is True
        assert body["risk"]["max_drawdown_pct"] == "7.5"
        assert body["schedules"][0]["at"] == "15:40:00"
        assert body["version"] == 1 and body["updated_by"].startswith("key:")
    async with gateway.runtime.sessionmaker() as session:
        record = await session.scalar(select(SettingsRecord))
    assert record is not None and record.secrets == {"discord_webhook_url": WEBHOOK}
    assert "very-secret-token" not in str(record.document)


async def test_an_omitted_secret_is_kept_and_an_empty_one_cleared(gateway: Gateway) -> None:
    admin = gateway.auth(Role.ADMIN)
    await gateway.client.put("/api/v1/dashboard/settings", json=document(), headers=admin)
    kept = await gateway.client.put(
        "/api/v1/dashboard/settings", json=document(notifications={"events": ["error"]}), headers=admin
    )
    cleared = await gateway.client.put(
        "/api/v1/dashboard/settings", json=document(notifications={"discord_webhook_url": ""}), headers=admin
    )

    assert kept.json()["notifications"]["discord_webhook_configured"] is True
    assert kept.json()["notifications"]["events"] == ["error"]
    assert cleared.json()["notifications"]["discord_webhook_configured"] is False
    assert cleared.json()["version"] == 3


async def test_a_trader_may_read_but_not_change_the_settings(gateway: Gateway) -> None:
    trader = gateway.auth(Role.TRADER)

    assert (await gateway.client.get("/api/v1/dashboard/settings", headers=trader)).status_code == 200
    assert (await gateway.client.put("/api/v1/dashboard/settings", json=document(), headers=trader)).status_code == 403


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"watchlist": ["5930"]}, "watchlist"),
        ({"risk": {"max_order_value_krw": -1}}, "risk"),
        ({"risk": {"max_order_value_krw": 10**9, "max_gross_exposure_krw": 10**6}}, "risk"),
        ({"risk": {"max_drawdown_pct": "0"}}, "risk"),
        ({"schedules": [{"job": "dance", "at": "10:00"}]}, "schedules"),
        ({"schedules": [{"job": "train", "at": "25:00"}]}, "schedules"),
        ({"schedules": [{"job": "train", "at": "10:00", "days": ["mon", "mon"]}]}, "schedules"),
        ({"notifications": {"discord_webhook_url": "http://example.com/hook"}}, "notifications"),
        ({"notifications": {"telegram_bot_token": "not-a-token"}}, "notifications"),
        ({"unknown_section": {}}, "unknown_section"),
    ],
)
async def test_invalid_settings_are_422_naming_the_field(gateway: Gateway, changes: dict[str, Any], where: str) -> None:
    response = await gateway.client.put(
        "/api/v1/dashboard/settings", json=document(**changes), headers=gateway.auth(Role.ADMIN)
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"
    assert any(where in entry["loc"] for entry in response.json()["detail"])
    assert "very-secret-token" not in response.text
