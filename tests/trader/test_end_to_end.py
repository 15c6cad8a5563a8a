"""All-in-one style, end to end: features on the bus → inferencer → trader → simulator fills →
positions and cash that reconcile with the simulator's own account to the won."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

from common.contracts import Envelope, FeaturesV1, ModelPromotedV1
from common.kis.sim import RunningSimulator
from inferencer.app import create_app as create_inferencer
from inferencer.settings import InferencerSettings

from ..inferencer.conftest import make_model
from .conftest import SYMBOL, TraderHarness, advance_market, eventually, paper_account


async def test_features_to_decisions_to_orders_to_fills_reconcile_with_the_simulator(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    trader = await TraderHarness(sqlite_url, sim, tmp_path).start()
    runtime = trader.runtime
    to_trader = httpx.AsyncClient(transport=httpx.ASGITransport(app=trader.app), base_url="http://trader")
    settings = InferencerSettings(model_uri=make_model(tmp_path, "buy-10pct", favoured=2))  # target exposure 0.1
    inferencer = create_inferencer(runtime, settings=settings, trader=to_trader)
    service = inferencer.state.inferencer
    bar = 0

    async def publish_bar() -> None:
        nonlocal bar
        price = sim.market.quote(SYMBOL, sim.clock.now()).price
        values: dict[str, float | None] = {"ret_1": 0.0, "rsi_14": 50.0, "vol_ratio": 1.0}
        payload = FeaturesV1(
            symbol=SYMBOL, timeframe="1m", ts=sim.clock.now() - timedelta(minutes=1) + timedelta(seconds=bar),
            close=price, values=values, feature_set="core-v1",
        )  # fmt: skip
        bar += 1
        await runtime.bus.publish(f"features.1m.{SYMBOL}", Envelope(producer="data-processor", payload=payload))

    try:
        async with inferencer.router.lifespan_context(inferencer):
            for _ in range(3):
                await publish_bar()
            await eventually(lambda: _decided(service, 2), message="no decisions")
            await eventually(lambda: _orders(trader, 1), message="no order reached the trader")
            for _ in range(12):  # the order is large against the tick volumes: it fills over many ticks
                await advance_market(sim, 60)
                await publish_bar()  # same target: the pending order counts, no second buy
            account = paper_account(sim)
            await eventually(lambda: _settled(trader), timeout=20, message="orders still open")
            bought = account.positions[SYMBOL].qty
            equity_before = 100_000_000
            assert 0.09 * equity_before < bought * 6_490 < 0.11 * equity_before
            assert len([o for o in account.orders if o.side.name == "BUY"]) == 1

            # Promote a flat model: the next bar sells everything.
            flat = make_model(tmp_path, "flat", favoured=0)
            promoted = ModelPromotedV1(
                model_id=uuid.uuid4(), version="flat", artifact_uri=flat, promoted_at=sim.clock.now()
            )
            await runtime.bus.publish("model.promoted", Envelope(producer="model-trainer", payload=promoted))
            await eventually(lambda: _serving(service, "flat"), message="model not swapped")
            await advance_market(sim, 60)
            await publish_bar()
            await eventually(lambda: _orders(trader, 2), message="no sell order")
            for _ in range(15):
                await advance_market(sim, 60)
                if account.positions[SYMBOL].qty == 0:
                    break
            await eventually(lambda: _settled(trader), timeout=20, message="sell still open")

            assert account.positions[SYMBOL].qty == 0
            pnl = (await trader.http.get("/trade/pnl")).json()
            assert pnl["cash"] == account.cash
            assert pnl["fees_paid"] == sum(o.commission + o.tax for o in account.orders)
            assert (await trader.http.get("/trade/positions")).json() == []
            report = (await trader.http.post("/trade/reconcile", headers={"X-Tradebot-Role": "admin"})).json()
            assert report["differences"] == []
            decisions = (await to_trader.get("/trade/history")).json()["items"]
            assert {d["source"] for d in decisions} == {"decision"}
            assert {d["decision"]["model_version"] for d in decisions} == {"buy-10pct", "flat"}
    finally:
        await to_trader.aclose()
        await trader.stop()


async def _decided(service: object, n: int) -> bool:
    return getattr(service, "decisions_made", 0) >= n


async def _serving(service: object, version: str) -> bool:
    model = service.engine.model  # type: ignore[attr-defined]
    return model is not None and model.version == version


async def _orders(trader: TraderHarness, n: int) -> bool:
    return (await trader.http.get("/trade/history")).json()["total"] >= n


async def _settled(trader: TraderHarness) -> bool:
    open_ = await trader.http.get("/trade/history", params={"status": ["NEW", "SUBMITTED", "PARTIALLY_FILLED"]})
    await asyncio.sleep(0)
    return open_.json()["total"] == 0
