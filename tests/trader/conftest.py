"""The trader against the KIS simulator over real sockets.

The market clock is a ``FixedClock`` on a Monday at 10:00 KST: nothing trades until a test
advances it, so fills are deterministic. ``TraderHarness`` runs the trader app (its lifespan,
lease and background tasks) on a database a test can reopen, to restart or run two replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from common.bus.memory import InMemoryBus
from common.clock import KST, Clock, FixedClock
from common.contracts import Envelope
from common.kis import KisClient, KisSettings
from common.kis.sim import RunningSimulator, SimulatorSettings, in_process_settings, serve_simulator
from common.kis.sim.exchange import AccountState
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from trader.app import create_app
from trader.broker import Broker, KisBroker
from trader.service import TraderService
from trader.settings import RiskLimits, TraderSettings

MONDAY_10AM = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
SYMBOL = "005930"  # 6,490 KRW at 10:00 in the seed-7 synthetic market, small tick volumes
ADMIN = {"X-Tradebot-Role": "admin", "X-Tradebot-User": "ops"}


def sim_settings(**overrides: Any) -> SimulatorSettings:
    return in_process_settings(**{"seed": 7, **overrides})


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with serve_simulator(sim_settings(), FixedClock(MONDAY_10AM)) as running:
        yield running


def paper_account(sim: RunningSimulator) -> AccountState:
    config = next(a for a in sim.settings.accounts if a.domain == "paper")
    return sim.exchange.account(config.appkey)


def kis_settings(sim: RunningSimulator, tmp_path: Path) -> KisSettings:
    account = next(a for a in sim.settings.accounts if a.domain == "paper")
    return KisSettings(
        domain="paper",  # type: ignore[arg-type]
        real_rest_url=sim.real.rest_url,
        real_ws_url=sim.real.ws_url,
        paper_rest_url=sim.paper.rest_url,
        paper_ws_url=sim.paper.ws_url,
        appkey=SecretStr(account.appkey),
        appsecret=account.appsecret,
        cano=SecretStr(account.cano),
        acnt_prdt_cd=SecretStr(account.acnt_prdt_cd),
        hts_id=SecretStr(account.hts_id),
        rate_per_second=1000.0,
        token_cache_path=tmp_path / "kis-tokens.json",
        ws_reconnect_initial_seconds=0.1,
        ws_reconnect_max_seconds=0.5,
    )


def trader_settings(**overrides: Any) -> TraderSettings:
    values: dict[str, Any] = {
        "poll_interval_seconds": 0.2,
        "reconcile_interval_seconds": 3600.0,
        "lease_ttl_seconds": 3.0,
        "task_stop_timeout_seconds": 2.0,
        "risk": RiskLimits(max_orders_per_minute=1000),
    }
    values.update(overrides)
    return TraderSettings(**values)


class TraderHarness:
    """One trader process-equivalent: its own runtime (engine, bus), KIS client and app."""

    def __init__(
        self,
        url: str,
        sim: RunningSimulator,
        tmp_path: Path,
        settings: TraderSettings | None = None,
        *,
        wrap_broker: Callable[[KisBroker], Broker] | None = None,
        lease_clock: Clock | None = None,
    ) -> None:
        self.url = url
        self.sim = sim
        self.tmp_path = tmp_path
        self.settings = settings or trader_settings()
        self.wrap_broker = wrap_broker
        self.lease_clock = lease_clock
        self.events: list[Envelope] = []
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> TraderHarness:
        runtime_settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=self.url)  # type: ignore[arg-type]
        self.runtime = await self._stack.enter_async_context(Runtime.from_settings(runtime_settings))

        async def record(envelope: Envelope) -> None:
            self.events.append(envelope)

        await self.runtime.bus.subscribe("test-trader-events", ["order.#", "fill.#"], record)
        client = KisClient(
            kis_settings(self.sim, self.tmp_path), http=httpx.AsyncClient(timeout=5.0), clock=self.sim.clock
        )
        self.kis = KisBroker(client)
        broker: Broker = self.wrap_broker(self.kis) if self.wrap_broker else self.kis
        self.app = create_app(
            self.runtime, settings=self.settings, broker=broker, clock=self.sim.clock, lease_clock=self.lease_clock
        )
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        transport = httpx.ASGITransport(app=self.app)
        self.http = await self._stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://trader", timeout=30.0)
        )
        return self

    @property
    def service(self) -> TraderService:
        service: TraderService = self.app.state.trader
        return service

    @property
    def bus(self) -> InMemoryBus:
        bus = self.runtime.bus
        assert isinstance(bus, InMemoryBus)
        return bus

    async def stop(self) -> None:
        await self._stack.aclose()

    async def wait_event(self, kind: str, timeout: float = 5.0) -> Envelope:
        async def seen() -> Envelope | None:
            return next((e for e in self.events if e.kind == kind), None)

        found: Envelope = await eventually(seen, timeout, f"no {kind} published")
        return found

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/trade/status/{order_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_status(self, order_id: str, *statuses: str, timeout: float = 15.0) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            detail = await self.order(order_id)
            return detail if detail["order"]["status"] in statuses else None

        return await eventually(done, timeout, f"order {order_id} never reached {statuses}")


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, message: str = "timed out") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.05)


async def advance_market(sim: RunningSimulator, seconds: float, step: float = 10.0) -> None:
    """Move the fixed market clock forward tick by tick, letting the simulator's pump match each step."""
    clock = sim.clock
    assert isinstance(clock, FixedClock)
    moved = 0.0
    while moved < seconds:
        clock.advance(timedelta(seconds=step))
        moved += step
        await asyncio.sleep(0.06)


@pytest.fixture
async def trader(sqlite_url: str, sim: RunningSimulator, tmp_path: Path) -> AsyncIterator[TraderHarness]:
    harness = await TraderHarness(sqlite_url, sim, tmp_path).start()
    try:
        yield harness
    finally:
        await harness.stop()
