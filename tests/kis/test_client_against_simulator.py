"""KisClient and KisWebSocket against the KIS simulator over real sockets (both domains)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import structlog
from pydantic import SecretStr

from common.clock import Clock, to_kst
from common.kis import (
    Connected,
    Disconnected,
    ExecutionNotice,
    KisClient,
    KisInvalidInput,
    KisSettings,
    KisWebSocket,
    TradeTick,
)
from common.kis.sim import SimulatorSettings, serve_simulator

# A Friday, 10:00 KST: the simulated market is open and runs at wall-clock speed.
START = datetime(2026, 7, 10, 1, 0, tzinfo=UTC)


@pytest.fixture
async def sim() -> AsyncIterator[Any]:
    settings = SimulatorSettings(
        real_rest_port=0, real_ws_port=0, paper_rest_port=0, paper_ws_port=0, start=START, speed=1.0,
        paper_rest_per_second=20.0,
    )  # fmt: skip
    async with serve_simulator(settings) as running:
        yield running


def account(sim: Any, domain: str) -> Any:
    return next(a for a in sim.settings.accounts if a.domain == domain)


def kis_settings(sim: Any, domain: str, tmp_path: Path, **overrides: Any) -> KisSettings:
    acct = account(sim, domain)
    values: dict[str, Any] = {
        "domain": domain,
        "real_rest_url": sim.real.rest_url,
        "real_ws_url": sim.real.ws_url,
        "paper_rest_url": sim.paper.rest_url,
        "paper_ws_url": sim.paper.ws_url,
        "appkey": SecretStr(acct.appkey),
        "appsecret": acct.appsecret,
        "cano": SecretStr(acct.cano),
        "acnt_prdt_cd": SecretStr(acct.acnt_prdt_cd),
        "hts_id": SecretStr(acct.hts_id),
        "token_cache_path": tmp_path / "kis-tokens.json",
        "ws_reconnect_initial_seconds": 0.1,
        "ws_reconnect_max_seconds": 1.0,
    }
    if domain == "paper":
        values["rate_per_second"] = 10.0
    values.update(overrides)
    return KisSettings(**values)


def make_client(
    sim: Any, domain: str, tmp_path: Path, log: list[httpx.Request] | None = None, **overrides: Any
) -> KisClient:
    async def record(request: httpx.Request) -> None:
        if log is not None:
            log.append(request)

    http = httpx.AsyncClient(timeout=10.0, event_hooks={"request": [record]})
    clock: Clock = sim.clock  # token expiry strings are in simulated time
    return KisClient(kis_settings(sim, domain, tmp_path, **overrides), http=http, clock=clock)


def symbol_of(sim: Any) -> str:
    assert sim.market.source.knows("005930")
    return "005930"


E = TypeVar("E")


async def next_event(ws: KisWebSocket, kind: type[E], timeout: float = 15.0) -> E:
    async def wait() -> E:
        async for event in ws:
            if isinstance(event, kind):
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(wait(), timeout)


async def test_quotes_book_and_charts_with_paging(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    sent: list[httpx.Request] = []
    async with make_client(sim, "real", tmp_path, sent) as client:
        quote = await client.get_quote(symbol)
        assert quote.price > 0 and quote.lower_limit <= quote.price <= quote.upper_limit
        assert quote.symbol == symbol
        book = await client.get_order_book(symbol)
        assert len(book.asks) == 10 and book.asks[0].price > book.bids[0].price > 0
        today = to_kst(sim.clock.now()).date()
        bars = await client.get_daily_bars(symbol, today - timedelta(days=300), today)
        minutes = await client.get_minute_bars(symbol)
        assert quote.tick_size > 1
        with pytest.raises(KisInvalidInput) as off_grid:
            await client.buy(symbol, 1, quote.price + 1)
        assert off_grid.value.msg_cd == "APBK0506"
    daily_calls = [r for r in sent if r.url.path.endswith("inquire-daily-itemchartprice")]
    assert len(bars) > 100 and len(daily_calls) >= 2
    assert [b.date for b in bars] == sorted({b.date for b in bars if b.date is not None})
    assert all(b.low <= b.close <= b.high for b in bars)
    minute_calls = [r for r in sent if r.url.path.endswith("inquire-time-itemchartprice")]
    assert len(minutes) > 30 and len(minute_calls) >= 2
    assert minutes[0].at < minutes[-1].at
    assert {r.headers["tr_id"] for r in sent if "/uapi/" in r.url.path} >= {"FHKST01010100", "FHKST03010100"}


async def test_a_restarted_client_reuses_the_stored_token(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    async with make_client(sim, "real", tmp_path) as first:
        await first.get_quote(symbol)
        token = await first.access_token()
        assert first.rest.tokens.issued_count == 1
    async with make_client(sim, "real", tmp_path) as restarted:
        await restarted.get_quote(symbol)
        assert await restarted.access_token() == token
        assert restarted.rest.tokens.issued_count == 0


async def test_rate_limit_errors_are_backed_off(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    async with make_client(sim, "real", tmp_path) as client:
        await client.access_token()
        reply = await client.rest.http.post(f"{sim.real.rest_url}/admin/faults", json={"rate_limit_calls": 2})
        assert reply.status_code == 200
        with structlog.testing.capture_logs() as logs:
            quote = await client.get_quote(symbol)
    assert quote.price > 0
    assert [e["event"] for e in logs if e["event"] == "kis.rate_limited"] == ["kis.rate_limited"] * 2


async def test_going_faster_than_the_paper_limit_is_absorbed(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    # Our bucket allows 40/s, the simulated paper gateway 20/s: the gap is absorbed by EGW00201 back-off.
    async with make_client(sim, "paper", tmp_path, rate_per_second=40.0, rate_burst=40, max_retries=6) as client:
        quotes = await asyncio.gather(*(client.get_quote(symbol) for _ in range(30)))
    assert all(q.price > 0 for q in quotes)


async def test_buy_is_acknowledged_filled_and_notified_encrypted(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    async with make_client(sim, "paper", tmp_path) as client, client.websocket() as ws:
        await ws.wait_connected(10)
        await ws.subscribe_notices()
        power = await client.get_buying_power(symbol)
        assert power.orderable_cash > 0
        ack = await client.buy(symbol, 3, order_division="01")
        assert len(ack.order_no) == 10 and ack.order_no.isdigit()
        notices: list[ExecutionNotice] = []
        while not any(n.is_fill for n in notices):
            notices.append(await next_event(ws, ExecutionNotice))
        fill = next(n for n in notices if n.is_fill)
        assert fill.tr_id == "H0STCNI9"
        assert fill.oder_no == ack.order_no and fill.side == "buy" and fill.stck_shrn_iscd == symbol
        assert fill.cntg_qty > 0 and fill.cntg_unpr > 0 and fill.layout == 26
        assert fill.acnt_no.startswith(account(sim, "paper").cano)
        balance = await client.get_balance()
        held = {h.symbol: h for h in balance.holdings}
        assert held[symbol].quantity >= fill.cntg_qty
        orders = await client.get_daily_orders(to_kst(sim.clock.now()).date())
        assert ack.order_no in {o.order_no for o in orders.orders}


async def test_daily_orders_are_paged_on_paper(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    sent: list[httpx.Request] = []
    async with make_client(sim, "paper", tmp_path, sent) as client:
        quote = await client.get_quote(symbol)
        low = quote.lower_limit  # resting far below the market: stays open
        acks = [await client.buy(symbol, 1, low) for _ in range(17)]
        orders = await client.get_daily_orders(to_kst(sim.clock.now()).date(), filled="unfilled")
        cancel = await client.cancel_order(acks[0].org_no, acks[0].order_no)
    ccld = [r for r in sent if r.url.path.endswith("inquire-daily-ccld")]
    assert len(ccld) >= 2 and ccld[0].headers["tr_id"] == "VTTC0081R"
    assert [r.headers.get("tr_cont") for r in ccld][:2] == ["", "N"]
    assert {a.order_no for a in acks} <= {o.order_no for o in orders.orders}
    assert all(o.remaining_quantity == 1 for o in orders.orders if o.order_no in {a.order_no for a in acks})
    assert cancel.order_no and cancel.order_no != acks[0].order_no
    assert {r.headers["tr_id"] for r in sent if r.url.path.endswith("order-cash")} == {"VTTC0012U"}


async def test_websocket_reconnects_after_a_forced_drop_and_resubscribes(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    async with make_client(sim, "real", tmp_path) as client, client.websocket() as ws:
        await ws.subscribe_trades(symbol)
        await ws.subscribe_book(symbol)
        await ws.subscribe_notices()
        first = await next_event(ws, TradeTick)
        assert first.mksc_shrn_iscd == symbol
        reply = await client.rest.http.post(f"{sim.real.rest_url}/admin/faults", json={"drop_websockets": True})
        assert reply.json()["sessions_dropped"] >= 1
        dropped = await next_event(ws, Disconnected)
        again = await next_event(ws, Connected)
        assert again.gap_since is not None and again.gap_since >= dropped.at - timedelta(seconds=1)
        assert {s.tr_id for s in again.resubscribed} == {"H0STCNT0", "H0STASP0", "H0STCNI0"}
        after = await next_event(ws, TradeTick)
        assert after.mksc_shrn_iscd == symbol and after.received_at >= again.at
        assert ws.reconnects == 1


async def test_dates_are_kst_aware(sim: Any, tmp_path: Path) -> None:
    symbol = symbol_of(sim)
    async with make_client(sim, "real", tmp_path) as client:
        ack = await client.buy(symbol, 1, order_division="01")
    assert ack.ordered_at is not None and ack.ordered_at.utcoffset() == timedelta(hours=9)
    assert ack.ordered_at.date() == date(2026, 7, 10)
