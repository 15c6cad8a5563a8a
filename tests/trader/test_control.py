"""Kill switch, single-writer lease, notifications, migrations and input validation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import inspect

from common.db import create_engine, downgrade, migrate
from common.kis.sim import RunningSimulator
from trader.settings import NotificationSettings, RiskLimits

from .conftest import ADMIN, SYMBOL, TraderHarness, advance_market, eventually, paper_account, trader_settings

TRADER_TABLES = {
    "orders", "fills", "positions", "audit_log", "account_snapshots", "kill_switch", "trader_lease",
    "notifications", "trader_accounts",
}  # fmt: skip


async def test_the_kill_switch_needs_admin_halts_orders_and_survives_a_restart(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    engage = {"engaged": True, "reason": "manual halt"}
    first = await TraderHarness(sqlite_url, sim, tmp_path).start()
    try:
        assert (await first.http.post("/trade/kill-switch", json=engage)).status_code == 401
        trader_role = {"X-Tradebot-Role": "trader"}
        assert (await first.http.post("/trade/kill-switch", json=engage, headers=trader_role)).status_code == 403
        engaged = await first.http.post("/trade/kill-switch", json=engage, headers=ADMIN)
        assert engaged.status_code == 200 and engaged.json()["engaged"] is True
        assert engaged.json()["actor"] == "admin:ops"
    finally:
        await first.stop()

    second = await TraderHarness(sqlite_url, sim, tmp_path).start()
    try:
        assert (await second.http.get("/trade/kill-switch")).json()["engaged"] is True
        halted = (await second.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1})).json()
        assert halted["status"] == "REJECTED" and halted["reject_reason"].startswith("risk:kill_switch")
        release = {"engaged": False, "reason": "resume"}
        assert (await second.http.post("/trade/kill-switch", json=release, headers=ADMIN)).json()["engaged"] is False
        resumed = (await second.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1})).json()
        assert resumed["status"] == "SUBMITTED"
        assert paper_account(sim).orders and len(paper_account(sim).orders) == 1
    finally:
        await second.stop()


async def test_engaging_the_kill_switch_can_cancel_open_orders_and_flatten(
    trader: TraderHarness, sim: RunningSimulator
) -> None:
    bought = (await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 25})).json()
    await advance_market(sim, 60)
    await trader.wait_status(bought["id"], "FILLED")
    resting = (await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 10, "price": 5_000})).json()

    body = {"engaged": True, "reason": "flatten drill", "cancel_open_orders": True, "flatten": True}
    view = (await trader.http.post("/trade/kill-switch", json=body, headers=ADMIN)).json()
    assert view["cancelled_orders"] == [resting["id"]] and len(view["flatten_orders"]) == 1
    assert (await trader.order(resting["id"]))["order"]["status"] == "CANCELLED"

    await advance_market(sim, 60)
    await trader.wait_status(view["flatten_orders"][0], "FILLED")
    assert paper_account(sim).positions[SYMBOL].qty == 0
    assert (await trader.http.get("/trade/positions")).json() == []


async def test_a_second_replica_stays_passive_until_the_first_ones_lease_expires(
    database_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    settings = trader_settings(lease_ttl_seconds=1.5)
    first = await TraderHarness(database_url, sim, tmp_path, settings).start()
    second = await TraderHarness(database_url, sim, tmp_path, settings).start()
    try:
        assert first.service.active and not second.service.active
        refused = await second.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1})
        assert refused.status_code == 503 and "passive" in refused.json()["message"]
        assert (await second.http.get("/readyz")).status_code == 503
        assert (await first.http.get("/readyz")).status_code == 200

        # The first replica dies without releasing its lease: the second takes over once it expires.
        first.service.lease.held = False
        await first.stop()
        await eventually(lambda: _active(second), timeout=10, message="the passive replica never took over")
        taken = await second.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1})
        assert taken.status_code == 200 and taken.json()["status"] == "SUBMITTED"
    finally:
        await second.stop()


async def _active(harness: TraderHarness) -> bool:
    return harness.service.active


class Listener:
    """A local HTTP endpoint standing in for Discord and Telegram; ``delay`` makes it slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next((int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length")), 0)
        body = await reader.readexactly(length)
        await asyncio.sleep(self.delay)
        self.received.append((lines[0].split(" ")[1], json.loads(body)))
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[Listener, str]]:
    target = Listener()
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield target, f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def test_fills_and_rejections_are_notified_rate_limited_and_without_blocking(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path, listener: tuple[Listener, str]
) -> None:
    target, base = listener
    target.delay = 0.5  # a slow webhook must not slow trading
    notifications = NotificationSettings(
        discord_webhook_url=SecretStr(f"{base}/api/webhooks/123/secret-token"),
        telegram_bot_token=SecretStr("123456:bot-secret"),
        telegram_chat_id=SecretStr("42"),
        telegram_api_url=base,
        burst=3,
        per_minute=1,
    )
    settings = trader_settings(notifications=notifications, risk=RiskLimits(max_orders_per_minute=1000))
    harness = await TraderHarness(sqlite_url, sim, tmp_path, settings).start()
    try:
        started = time.perf_counter()
        for i in range(6):
            order = (await harness.http.post("/trade/sell", json={"symbol": SYMBOL, "quantity": 1 + i})).json()
            assert order["status"] == "REJECTED"
        assert time.perf_counter() - started < 2.0  # six orders did not wait for 0.5 s webhooks

        await eventually(lambda: _count(target, 6), timeout=10, message="notifications not delivered")
        paths = sorted({path for path, _ in target.received})
        assert paths == ["/api/webhooks/123/secret-token", "/bot123456:bot-secret/sendMessage"]
        discord = [body["content"] for path, body in target.received if path.startswith("/api")]
        assert len(discord) == 3 and all("rejected" in text for text in discord)  # burst 3, then the limit holds
        telegram = [body for path, body in target.received if path.startswith("/bot")]
        assert telegram[0]["chat_id"] == "42"
        await asyncio.sleep(0.3)
        assert len(target.received) == 6
        assert harness.service.notifier.suppressed == 3
    finally:
        await harness.stop()


async def _count(target: Listener, n: int) -> bool:
    return len(target.received) >= n


async def test_migration_creates_and_drops_the_trader_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:

        async def tables() -> set[str]:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))

        await migrate(database_url)
        assert await tables() >= TRADER_TABLES
        await downgrade(database_url, "0005@0001")
        assert not TRADER_TABLES & await tables()
        await migrate(database_url)
        assert await tables() >= TRADER_TABLES
    finally:
        await engine.dispose()


async def test_bad_requests_get_clear_4xx_answers(trader: TraderHarness) -> None:
    http = trader.http
    both = {"symbol": SYMBOL, "target_exposure": "0.5", "action": "buy", "quantity": 1}
    assert (await http.post("/trade/execute", json=both)).status_code == 422
    assert (await http.post("/trade/execute", json={"symbol": SYMBOL, "action": "buy"})).status_code == 422
    assert (await http.post("/trade/buy", json={"symbol": "12", "quantity": 1})).status_code == 422
    assert (await http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 0})).status_code == 422
    assert (await http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1, "price": -5})).status_code == 422
    missing = await http.get("/trade/status/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert (await http.get("/trade/status/not-a-uuid")).status_code == 422
    naive = await http.get("/trade/history", params={"since": "2024-03-04T09:00:00"})
    assert naive.status_code == 422 and "time zone" in naive.json()["message"]
    assert (await http.get("/trade/history", params={"limit": 0})).status_code == 422
    cancel_missing = await http.post("/trade/orders/00000000-0000-0000-0000-000000000000/cancel")
    assert cancel_missing.status_code == 404


async def test_reconciliation_surfaces_a_difference_with_the_broker_and_adopts_it(
    trader: TraderHarness, sim: RunningSimulator
) -> None:
    paper_account(sim).cash += 1_234  # e.g. a deposit the trader did not see
    assert (await trader.http.post("/trade/reconcile")).status_code == 401
    report = (await trader.http.post("/trade/reconcile", headers=ADMIN)).json()

    assert report["differences"] == [
        {"field": "cash", "symbol": None, "ledger": paper_account(sim).cash - 1_234, "broker": paper_account(sim).cash}
    ]
    assert report["adopted"] is True
    latest = (await trader.http.get("/trade/reconciliation")).json()
    assert latest["differences"] == report["differences"]
    assert (await trader.http.get("/trade/pnl")).json()["cash"] == paper_account(sim).cash
    clean = (await trader.http.post("/trade/reconcile", headers=ADMIN)).json()
    assert clean["differences"] == []
