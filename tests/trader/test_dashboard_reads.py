"""The dashboard's reads served by the trader: performance (equity, benchmark, metrics) and logs."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import structlog

from common import logbuffer
from common.kis.sim import RunningSimulator
from common.logging import configure
from trader.models import Fill
from trader.performance import EquityPoint, PriceSeries, performance, win_rate

from .conftest import SYMBOL, TraderHarness, advance_market, eventually

T0 = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)


def fill(side: str, quantity: int, price: int, minutes: int, commission: int = 0, tax: int = 0) -> Fill:
    return Fill(fill_id=f"f{minutes}", account="a", order_id=None, symbol=SYMBOL, side=side, quantity=quantity,
                price=price, gross=quantity * price, commission=commission, tax=tax, source="poll",
                filled_at=T0 + timedelta(minutes=minutes))  # fmt: skip


def test_win_rate_counts_sells_closed_at_a_profit_after_fees() -> None:
    fills = [fill("buy", 10, 1_000, 0), fill("sell", 5, 1_100, 1, tax=10), fill("sell", 5, 990, 2),
             fill("sell", 3, 2_000, 3)]  # fmt: skip
    # The last sell has nothing left to close (adopted shares): not counted.
    assert win_rate(fills) == (0.5, 2)


def test_performance_compares_equity_with_an_equal_weight_buy_and_hold() -> None:
    days = [T0 + timedelta(days=d) for d in range(4)]
    points = [EquityPoint(at, equity) for at, equity in zip(days, (100_000, 110_000, 99_000, 121_000), strict=True)]
    prices = {"005930": PriceSeries([(days[0] - timedelta(hours=1), 100), (days[2], 150)]),
              "000660": PriceSeries([(days[0], 200), (days[3], 100)])}  # fmt: skip
    view = performance(points, prices, [], limit=500)
    assert [p.benchmark for p in view.points] == [100_000, 100_000, 125_000, 100_000]
    assert [round(p.drawdown, 4) for p in view.points] == [0, 0, 0.1, 0]
    assert view.metrics.total_return is not None and round(view.metrics.total_return, 4) == 0.21
    assert view.metrics.max_drawdown == 0.1 and view.metrics.sharpe is not None
    assert view.metrics.benchmark_return == 0.0 and view.benchmark_symbols == ["000660", "005930"]
    assert len(performance(points * 3, prices, [], limit=5).points) == 5


async def test_the_performance_route_follows_reconciliations_and_fills(
    trader: TraderHarness, sim: RunningSimulator
) -> None:
    await eventually(lambda: _ok(trader, "/trade/pnl"), message="the first reconciliation")
    buy = (await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 10})).json()
    await advance_market(sim, 60)
    await trader.wait_status(buy["id"], "FILLED")
    response = await trader.http.get("/performance", params={"symbols": [SYMBOL], "points": 50})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["points"] and body["points"][-1]["equity"] > 0
    assert body["metrics"]["fills"] >= 1 and body["metrics"]["closed_trades"] == 0
    assert (await trader.http.get("/performance", params={"symbols": ["nope"]})).status_code == 422


async def _ok(trader: TraderHarness, path: str) -> bool:
    return (await trader.http.get(path)).status_code == 200


async def test_the_logs_route_tails_redacted_events_with_level_and_service_filters(trader: TraderHarness) -> None:
    configure("allinone", json_output=True, stream=io.StringIO())
    logbuffer.buffer.clear()
    structlog.get_logger("trader.service").info("trader.test_event", token="secret-value", symbol=SYMBOL)
    structlog.get_logger("api_gateway.proxy").warning("api_gateway.test_warning")
    everything = (await trader.http.get("/logs")).json()
    events = {e["event"]: e for e in everything["events"]}
    assert events["trader.test_event"]["component"] == "trader"
    assert events["trader.test_event"]["fields"]["token"] == "[REDACTED]"
    assert events["api_gateway.test_warning"]["component"] == "api-gateway"
    only_trader = (await trader.http.get("/logs", params={"service": "trader"})).json()["events"]
    assert {e["component"] for e in only_trader} == {"trader"}
    warnings = (await trader.http.get("/logs", params={"level": "warning"})).json()["events"]
    assert [e["event"] for e in warnings] == ["api_gateway.test_warning"]
    newer = (await trader.http.get("/logs", params={"after": everything["last_id"]})).json()
    assert all(e["id"] > everything["last_id"] for e in newer["events"])
    assert (await trader.http.get("/logs", params={"level": "loud"})).status_code == 422
