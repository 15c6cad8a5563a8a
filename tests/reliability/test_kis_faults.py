"""Reliability: whole KIS sessions survive the simulator's faults, over real sockets.

The simulator injects, on demand, what the real KIS gateway does on a bad day: EGW00201 rate-limit
storms, tokens expiring mid-session (EGW00123), bare HTTP 5xx, dropped WebSocket sessions and slow
answers. Two sessions run through waves of those faults:

- the data-collector service (its own job manager and ``KisClient``) streaming ticks over the
  WebSocket while backfill jobs and quote refreshes run — every job must complete with every bar,
  the stream must reconnect, resubscribe and keep delivering;
- a trading loop on ``KisClient`` placing market orders with the platform's retry rules (a
  ``Retryable`` error is retried; ``OrderOutcomeUnknown`` is answered by querying the broker before
  any resubmission) — every order must reach the broker exactly once and its fill notice arrive.

Both end by reading the simulator's own record of the tokens it issued (its ``kis_sim.token.issued``
events, in simulated time): never more than one a minute, however often tokens were rejected.
The unit-level behaviour of each fault is pinned in ``tests/kis/test_simulator_faults.py`` and
``tests/kis/test_client_against_simulator.py``; this file is about sessions that meet them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import structlog
from pydantic import SecretStr

from common.clock import KST, to_kst
from common.contracts import Envelope, MarketBarV1, MarketTickBatchV1
from common.errors import RateLimited, Retryable
from common.kis import (
    Connected,
    Disconnected,
    ExecutionNotice,
    KisClient,
    KisEvent,
    KisSettings,
    KisWebSocket,
    OrderOutcomeUnknown,
    TradeTick,
)
from common.kis.sim import RunningSimulator, in_process_settings, serve_simulator
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from data_collector.app import create_app
from data_collector.settings import DataCollectorSettings

# A Monday in session; the market runs 30 times faster than the wall clock, so a simulated
# minute (the token issuance interval) lasts two wall seconds.
MONDAY_10AM = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
SPEED = 30.0
TOKEN_LIFETIME = timedelta(seconds=86_400)
ONE_MINUTE = timedelta(seconds=60)
STREAMED = ["005930", "000660"]

T = TypeVar("T")


# --- the simulator and its token record -------------------------------------------------------


@contextlib.asynccontextmanager
async def simulator() -> AsyncIterator[RunningSimulator]:
    # Production token rules (one new token a minute, re-issue within 6 h); call limits relaxed
    # so that only the injected faults refuse calls.
    async with serve_simulator(in_process_settings(seed=11, start=MONDAY_10AM, speed=SPEED)) as running:
        yield running


@contextlib.contextmanager
def token_issuances() -> Iterator[list[datetime]]:
    """Simulated instants at which the simulator issued a *new* access token (from its own events)."""
    issued: list[datetime] = []
    with structlog.testing.capture_logs() as events:
        yield issued
    for event in events:
        if event.get("event") == "kis_sim.token.issued":
            expires = datetime.strptime(str(event["expires"]), "%Y-%m-%d %H:%M:%S").replace(tzinfo=KST)
            issued.append(expires - TOKEN_LIFETIME)


def distinct_issuances(issued: list[datetime]) -> list[datetime]:
    # A token re-asked for within its reuse window comes back unchanged and is logged again.
    return sorted(set(issued))


def assert_at_most_one_token_a_minute(issued: list[datetime]) -> None:
    new_tokens = distinct_issuances(issued)
    gaps = [later - earlier for earlier, later in itertools.pairwise(new_tokens)]
    assert all(gap >= ONE_MINUTE for gap in gaps), f"tokens issued closer than a minute apart: {new_tokens}"


async def arm(sim: RunningSimulator, **faults: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as admin:
        response = await admin.post(f"{sim.paper.rest_url}/admin/faults", json=faults)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def client_settings(sim: RunningSimulator, tmp_path: Path, **overrides: Any) -> KisSettings:
    account = next(a for a in sim.settings.accounts if a.domain == "paper")
    values: dict[str, Any] = {
        "domain": "paper",
        "real_rest_url": sim.real.rest_url,
        "real_ws_url": sim.real.ws_url,
        "paper_rest_url": sim.paper.rest_url,
        "paper_ws_url": sim.paper.ws_url,
        "appkey": SecretStr(account.appkey),
        "appsecret": account.appsecret,
        "cano": SecretStr(account.cano),
        "acnt_prdt_cd": SecretStr(account.acnt_prdt_cd),
        "hts_id": SecretStr(account.hts_id),
        "token_cache_path": tmp_path / "kis-tokens.json",
        "rate_per_second": 200.0,
        "ws_reconnect_initial_seconds": 0.1,
        "ws_reconnect_max_seconds": 0.5,
    }
    values.update(overrides)
    return KisSettings(**values)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(0.05)


# --- the data-collector session ---------------------------------------------------------------


@dataclass
class MarketSink:
    """What the collector published: bars by (symbol, day) and tick counts."""

    bars: dict[tuple[str, date], int] = field(default_factory=dict)
    ticks: int = 0

    async def on_bars(self, envelope: Envelope) -> None:
        assert isinstance(envelope.payload, MarketBarV1)
        for bar in envelope.payload.bars:
            key = (bar.symbol, to_kst(bar.ts).date())
            self.bars[key] = self.bars.get(key, 0) + 1

    async def on_ticks(self, envelope: Envelope) -> None:
        assert isinstance(envelope.payload, MarketTickBatchV1)
        self.ticks += len(envelope.payload.ticks)

    def days(self, symbol: str, start: date, end: date) -> list[date]:
        return sorted(day for (s, day) in self.bars if s == symbol and start <= day <= end)


@dataclass
class CollectorSession:
    sim: RunningSimulator
    http: httpx.AsyncClient
    sink: MarketSink

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/data/collect/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/data/collect/{job_id}/events")
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def start(self, body: dict[str, Any]) -> str:
        response = await self.http.post("/data/collect", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    async def finished(self, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def done() -> bool:
            found.update(await self.job(job_id))
            return found["status"] in ("completed", "failed", "cancelled")

        await eventually(done, f"job {job_id} to finish", timeout)
        return found

    async def backfill_lands_every_bar(self, symbols: list[str], start: date, end: date) -> str:
        job_id = await self.start({"kind": "backfill", "symbols": symbols, "start": str(start), "end": str(end)})
        job = await self.finished(job_id)
        assert job["status"] == "completed", (job, await self.events(job_id))
        for symbol in symbols:
            expected = [b.day for b in self.sim.market.daily_bars(symbol, end) if start <= b.day <= end]
            assert len(expected) > 200, symbol
            assert self.sink.days(symbol, start, end) == expected, symbol
        assert all(count == 1 for count in self.sink.bars.values()), "a bar was published twice"
        return job_id

    async def quotes_refresh(self, symbols: list[str]) -> None:
        response = await self.http.get("/data/market", params={"symbols": ",".join(symbols), "refresh": "true"})
        assert response.status_code == 200, response.text
        snapshots = response.json()["snapshots"]
        assert {s["symbol"] for s in snapshots} == set(symbols) and all(s["price"] > 0 for s in snapshots)

    async def reconnects(self, job_id: str) -> int:
        return sum(1 for e in await self.events(job_id) if e["kind"] == "reconnect")

    async def stream_keeps_delivering(self, job_id: str, reconnects: int) -> None:
        async def reconnected() -> bool:
            return await self.reconnects(job_id) >= reconnects

        await eventually(reconnected, f"stream reconnect #{reconnects}")
        seen = self.sink.ticks

        async def more_ticks() -> bool:
            return self.sink.ticks > seen

        await eventually(more_ticks, "ticks after the reconnect")


@contextlib.asynccontextmanager
async def collector_session(
    sim: RunningSimulator, database_url: str, tmp_path: Path
) -> AsyncIterator[CollectorSession]:
    settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr(database_url))
    async with Runtime.from_settings(settings, clock=sim.clock) as runtime:
        runtime.extras["kis"] = client_settings(sim, tmp_path)
        sink = MarketSink()
        await runtime.bus.subscribe("reliability.bars", ["bar.#"], sink.on_bars)
        await runtime.bus.subscribe("reliability.ticks", ["tick.#"], sink.on_ticks)
        app = create_app(runtime, DataCollectorSettings(tick_flush_seconds=0.1))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://collector", timeout=30) as http:
                yield CollectorSession(sim, http, sink)


@pytest.mark.timeout(90)
async def test_collector_session_recovers_from_every_kis_fault_with_at_most_one_token_a_minute(
    sqlite_url: str, tmp_path: Path
) -> None:
    with token_issuances() as issued:
        async with simulator() as sim, collector_session(sim, sqlite_url, tmp_path) as session:
            stream = await session.start({"kind": "stream", "symbols": STREAMED, "channels": ["trades", "book"]})

            async def streaming() -> bool:
                return session.sink.ticks > 0

            await eventually(streaming, "the first ticks")
            await session.quotes_refresh(STREAMED)

            # Wave 1, all at once: a storm longer than the client's own retries, bare 503s (the
            # token and approval endpoints get them too), slow answers, every token expired and
            # the WebSocket cut.
            armed = await arm(
                sim,
                rate_limit_calls=6,
                http_error_calls=5,
                http_error_status=503,
                latency_ms=150,
                latency_seconds=2,
                expire_tokens=True,
                drop_websockets=True,
            )
            assert armed["tokens_expired"] == 1 and armed["sessions_dropped"] == 1
            first = await session.backfill_lands_every_bar(["035420", "051910"], date(2022, 1, 3), date(2023, 6, 30))
            await session.stream_keeps_delivering(stream, reconnects=1)
            retries = [e for e in await session.events(first) if e["kind"] == "retry"]
            assert {e["detail"]["error"] for e in retries} >= {"rate_limited", "temporarily_unavailable"}

            # Wave 2, a minute of market time later: a timed storm, the tokens expire again and
            # the socket drops again while another backfill and a quote refresh run.
            armed = await arm(sim, rate_limit_seconds=1.0, expire_tokens=True, drop_websockets=True)
            assert armed["tokens_expired"] == 1 and armed["sessions_dropped"] == 1
            await session.backfill_lands_every_bar(["005380"], date(2021, 1, 4), date(2022, 6, 30))
            await session.quotes_refresh(["005930", "005380"])
            await session.stream_keeps_delivering(stream, reconnects=2)
            assert (await session.job(stream))["status"] == "running"

    new_tokens = distinct_issuances(issued)
    assert len(new_tokens) == 3, new_tokens  # the first one, then one after each forced expiry
    assert_at_most_one_token_a_minute(issued)


# --- the trading loop -------------------------------------------------------------------------


@dataclass
class EventLog:
    """Every event of a ``KisWebSocket``, collected in the background."""

    events: list[KisEvent] = field(default_factory=list)

    async def collect(self, ws: KisWebSocket) -> None:
        async for event in ws:
            self.events.append(event)

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    def fills(self) -> dict[str, ExecutionNotice]:
        return {n.oder_no: n for n in self.of(ExecutionNotice) if n.is_fill}


async def retrying(call: Callable[[], Awaitable[T]], attempts: int = 6) -> T:
    """The platform's rule for reads: a ``Retryable`` error is retried after its delay."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Retryable as exc:
            if attempt == attempts:
                raise
            await asyncio.sleep(min(exc.retry_after, 1.0) if isinstance(exc, RateLimited) else 0.2)
    raise AssertionError("unreachable")


async def order_numbers(client: KisClient, day: date) -> set[str]:
    return {o.order_no for o in (await retrying(lambda: client.get_daily_orders(day))).orders}


async def buy_once(client: KisClient, symbol: str, day: date, known: set[str]) -> tuple[str, int]:
    """A market buy of one share that reaches the broker exactly once; (order number, attempts).

    KIS orders carry no client id: after ``OrderOutcomeUnknown`` the broker's order list (compared
    with ``known``, the orders before this one) says whether the order went through before
    anything is sent again.
    """
    for attempt in range(1, 7):
        try:
            ack = await client.buy(symbol, 1, order_division="01")
            return ack.order_no, attempt
        except OrderOutcomeUnknown:
            orders = (await retrying(lambda: client.get_daily_orders(day))).orders
            placed = [o.order_no for o in orders if o.order_no not in known]
            if placed:
                return placed[0], attempt
        except Retryable as exc:
            await asyncio.sleep(min(exc.retry_after, 1.0) if isinstance(exc, RateLimited) else 0.2)
    raise AssertionError(f"no order of {symbol} reached the broker in 6 attempts")


# Per round: faults armed before its reads, then faults armed just before its order is sent.
FAULT_ROUNDS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"rate_limit_calls": 6}, {"rate_limit_calls": 2}),
    ({"expire_tokens": True}, {"expire_tokens": True}),
    ({"http_error_calls": 2, "http_error_status": 500}, {"http_error_calls": 1, "http_error_status": 502}),
    ({"drop_websockets": True}, {}),
    ({"latency_ms": 300, "latency_seconds": 1.5}, {"latency_ms": 200, "latency_seconds": 0.5}),
    ({"rate_limit_seconds": 0.6, "expire_tokens": True, "drop_websockets": True, "http_error_calls": 1},
     {"http_error_calls": 1}),
]  # fmt: skip


@pytest.mark.timeout(90)
async def test_trading_loop_places_each_order_exactly_once_and_hears_every_fill_through_kis_faults(
    tmp_path: Path,
) -> None:
    symbol = "005930"
    with token_issuances() as issued:
        async with simulator() as sim:
            settings = client_settings(sim, tmp_path, max_retries=2)
            async with KisClient(settings, clock=sim.clock) as client, client.websocket() as ws:
                log = EventLog()
                reader = asyncio.create_task(log.collect(ws), name="reliability-ws-reader")
                try:
                    await ws.subscribe_notices()
                    await ws.subscribe_trades(symbol)
                    day = to_kst(sim.clock.now()).date()
                    orders: list[str] = []
                    resubmitted = 0
                    for faults, order_faults in FAULT_ROUNDS:
                        drops = len(log.of(Disconnected))
                        connects = len(log.of(Connected))
                        await arm(sim, **faults)
                        if faults.get("drop_websockets"):

                            async def resubscribed(drops: int = drops, connects: int = connects) -> bool:
                                return len(log.of(Disconnected)) > drops and len(log.of(Connected)) > connects

                            await eventually(resubscribed, "the WebSocket to reconnect and resubscribe")
                            assert {s.tr_id for s in log.of(Connected)[-1].resubscribed} == {"H0STCNI9", "H0STCNT0"}
                        quote = await retrying(lambda: client.get_quote(symbol))
                        assert quote.price > 0
                        bars = await retrying(lambda: client.get_daily_bars(symbol, day - timedelta(days=60), day))
                        assert len(bars) > 30
                        known = await order_numbers(client, day)
                        if order_faults:
                            await arm(sim, **order_faults)
                        order_no, attempts = await buy_once(client, symbol, day, known)
                        resubmitted += attempts - 1
                        orders.append(order_no)

                        async def filled(order_no: str = order_no) -> bool:
                            return order_no in log.fills()

                        await eventually(filled, f"the fill notice of order {order_no}")
                    ticks_before = len(log.of(TradeTick))

                    async def ticks_flow() -> bool:
                        return len(log.of(TradeTick)) > ticks_before

                    await eventually(ticks_flow, "trade ticks after the last reconnect")
                    broker = await retrying(lambda: client.get_daily_orders(day))
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader

    assert len(set(orders)) == len(FAULT_ROUNDS)
    assert sorted(o.order_no for o in broker.orders) == sorted(orders)  # nothing sent twice
    assert all(o.filled_quantity == 1 for o in broker.orders)
    assert resubmitted == 2  # each bare 5xx on an order was answered by asking the broker first
    assert len(log.of(Connected)) >= 3  # the first session and one per drop
    expiries = sum(bool(reads.get("expire_tokens")) + bool(order.get("expire_tokens")) for reads, order in FAULT_ROUNDS)
    new_tokens = distinct_issuances(issued)
    assert len(new_tokens) == 1 + expiries, new_tokens
    assert_at_most_one_token_a_minute(issued)
