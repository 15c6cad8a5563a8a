"""A trader process killed between the broker booking its order and the trader recording the
acknowledgement: restarted, it places no second order and ends up with the broker's positions.

The KIS simulator and the trader run as OS processes (``common.cluster``) on the private
PostgreSQL and RabbitMQ (``conftest.py``). The trader reaches the simulator's REST API through a
proxy that loses the answer to the order (``proxy.py``): once the simulator has answered — so it
has booked the order — the trader is killed with SIGKILL, its order row still NEW and without
the broker's order number. The new process must find the order at the broker, not send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import Clock, kst_today
from common.cluster import SIMULATOR, TRADER, Cluster, ClusterConfig
from common.db import create_engine, migrate
from common.kis import Balance, KisClient, KisDomain, KisSettings, OrderRecord
from common.kis.clock import follow_simulator_clock
from common.kis.sim.settings import dev_account
from tests.reliability.proxy import HoldingProxy
from tests.reliability.servers import PrivateRabbitMQ

pytestmark = pytest.mark.integration

ORDER_PATH = "/uapi/domestic-stock/v1/trading/order-cash"
# A Monday, a few minutes into the session: at 60× the test has the market open for hours.
SIM_START = "2024-03-04T09:05:00+09:00"
SYMBOL = "005930"
QUANTITY = 10
ADMIN = {"X-Tradebot-Role": "admin", "X-Tradebot-User": "reliability"}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.2) -> None:
    """Await ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Broker:
    """The simulator's side, asked directly (never through the proxy): what it has booked and holds."""

    client: KisClient
    clock: Clock

    async def orders(self) -> tuple[OrderRecord, ...]:
        day: date = kst_today(self.clock)
        return (await self.client.get_daily_orders(day, day)).orders

    async def balance(self) -> Balance:
        return await self.client.get_balance()


@dataclass
class Setup:
    cluster: Cluster
    proxy: HoldingProxy
    broker: Broker
    engine: AsyncEngine
    started: float = field(default_factory=time.monotonic)

    @property
    def trader_url(self) -> str:
        return self.cluster.url(TRADER.name)

    def mark(self, what: str) -> None:
        """A milestone on the test's timeline (shown with the output of a failing test, or with -s)."""
        print(f"[{time.monotonic() - self.started:6.1f} s] {what}")

    async def start_trader(self) -> None:
        self.cluster.start_member(TRADER.name)  # from this thread: the child dies with it
        # Ready means active: it holds the account lease and has reconciled with the broker.
        await asyncio.to_thread(self.cluster.wait_ready, [TRADER.name], timeout=90)

    async def order_rows(self, key: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text("SELECT id, status, broker_order_no, submit_attempts FROM orders WHERE idempotency_key = :key"),
                {"key": key},
            )
            return [dict(row._mapping) for row in result]


def broker_settings(cluster: Cluster, rest_url: str) -> KisSettings:
    """The simulator's development paper account, as the cluster gives it to the trader."""
    account = dev_account("paper")
    return KisSettings(
        domain=KisDomain.PAPER,
        paper_rest_url=rest_url,
        paper_ws_url=f"ws://127.0.0.1:{cluster.sim_ports['paper_ws']}",
        appkey=SecretStr(account.appkey),
        appsecret=account.appsecret,
        cano=SecretStr(account.cano),
        acnt_prdt_cd=SecretStr(account.acnt_prdt_cd),
        hts_id=SecretStr(account.hts_id),
        rate_per_second=5.0,
        # The trader's token, from the database: the simulator issues one a (simulated) minute.
        token_store="db",
    )


@contextlib.asynccontextmanager
async def trading_setup(database_url: str, rabbitmq: PrivateRabbitMQ, work_dir: Path) -> AsyncIterator[Setup]:
    """The simulator running, a proxy in front of its paper REST port, and a trader planned behind it."""
    began = time.monotonic()
    await migrate(database_url)
    exchange = f"reliability-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(
        ClusterConfig(
            database_url=database_url,
            amqp_url=rabbitmq.url,
            work_dir=work_dir,
            exchange=exchange,
            free_ports=True,
            sim_speed=60.0,
            sim_start=SIM_START,
            sim_rest_per_second=20.0,
            stop_timeout=10.0,
            env={"TRADER_LEASE_TTL_SECONDS": "3", "TRADER_POLL_INTERVAL_SECONDS": "0.5"},
        )
    )
    sim_url = f"http://127.0.0.1:{cluster.sim_ports['paper_rest']}"
    engine = create_engine(database_url)
    with HoldingProxy(cluster.sim_ports["paper_rest"]) as proxy:
        cluster.members[TRADER.name].env["KIS_PAPER_REST_URL"] = proxy.url
        try:
            cluster.start_member(SIMULATOR)
            await asyncio.to_thread(cluster.wait_ready, [SIMULATOR], timeout=90)
            clock = await follow_simulator_clock(sim_url)
            async with KisClient.from_settings(broker_settings(cluster, sim_url), engine=engine, clock=clock) as client:
                yield Setup(cluster, proxy, Broker(client, clock), engine, started=began)
        finally:
            await asyncio.to_thread(cluster.stop)
            await engine.dispose()


async def test_trader_killed_between_submit_and_ack_restarts_without_a_duplicate_order(
    private_database_url: str, live_rabbitmq: PrivateRabbitMQ, tmp_path: Path
) -> None:
    key = f"reliability-{uuid.uuid4()}"
    body = {"symbol": SYMBOL, "quantity": QUANTITY, "idempotency_key": key}
    async with trading_setup(private_database_url, live_rabbitmq, tmp_path / "cluster") as setup:
        await setup.start_trader()
        setup.mark("simulator and trader ready")
        assert await setup.broker.orders() == ()

        setup.proxy.hold(ORDER_PATH)
        async with httpx.AsyncClient(base_url=setup.trader_url, timeout=60) as http:
            request = asyncio.create_task(http.post("/trade/buy", json=body))
            answered = await asyncio.to_thread(setup.proxy.answer_held.wait, 30)
            assert answered, f"the simulator never answered the order:\n{setup.cluster.log_tail(TRADER.name)}"
            # The simulator booked the order; the trader has not heard back, so its row is NEW.
            [row] = await setup.order_rows(key)
            assert (row["status"], row["broker_order_no"]) == ("NEW", None)
            setup.cluster.kill_member(TRADER.name)
            setup.mark("trader killed with the order booked at the broker and unacknowledged")
            with pytest.raises(httpx.HTTPError):
                await request

            [booked] = await setup.broker.orders()
            await setup.start_trader()
            setup.mark("trader restarted")

            async def filled() -> bool:
                [current] = await setup.order_rows(key)
                return bool(current["status"] == "FILLED")

            await eventually(filled, 60, "the recovered order to fill")
            setup.mark("order filled")

            again = await http.post("/trade/buy", json=body)
            assert again.status_code == 200, again.text
            assert again.json()["id"] == str(row["id"])
            detail = (await http.get(f"/trade/status/{row['id']}")).json()
            reconciliation = await http.post("/trade/reconcile", headers=ADMIN)
            assert reconciliation.status_code == 200, reconciliation.text
            positions = (await http.get("/trade/positions")).json()

        # One order at the broker, adopted (not resent) under the broker's number, and filled.
        assert [r.order_no for r in await setup.broker.orders()] == [booked.order_no]
        [row] = await setup.order_rows(key)
        assert row["broker_order_no"] == booked.order_no.lstrip("0")
        assert row["submit_attempts"] == 1
        assert "order.adopted" in [event["kind"] for event in detail["events"]]
        assert sum(fill["quantity"] for fill in detail["fills"]) == QUANTITY
        # The trader's positions and cash are the broker's.
        balance = await setup.broker.balance()
        held = [(h.symbol, h.quantity, h.purchase_amount) for h in balance.holdings if h.quantity]
        assert [(symbol, quantity) for symbol, quantity, _ in held] == [(SYMBOL, QUANTITY)]
        assert [(p["symbol"], p["quantity"], p["cost"]) for p in positions] == held
        assert reconciliation.json()["differences"] == []
        assert reconciliation.json()["broker_cash"] == reconciliation.json()["ledger_cash"]
