"""Orders through the trader to the KIS simulator: fills, partial fills, cancels, rejections, idempotency."""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.kis.sim import RunningSimulator
from common.krx import commission, sell_tax
from trader.settings import RiskLimits

from .conftest import SYMBOL, TraderHarness, advance_market, paper_account, trader_settings


def sim_position(sim: RunningSimulator, symbol: str = SYMBOL) -> tuple[int, int]:
    position = paper_account(sim).positions.get(symbol)
    return (position.qty, position.cost) if position else (0, 0)


async def ledger_matches_simulator(trader: TraderHarness, sim: RunningSimulator) -> None:
    pnl = (await trader.http.get("/trade/pnl")).json()
    positions = {p["symbol"]: p for p in (await trader.http.get("/trade/positions")).json()}
    account = paper_account(sim)
    assert pnl["cash"] == account.cash
    for symbol, held in account.positions.items():
        if held.qty:
            assert (positions[symbol]["quantity"], positions[symbol]["cost"]) == (held.qty, held.cost)
        else:
            assert symbol not in positions


async def test_limit_buy_fills_and_the_ledger_matches_the_simulator_to_the_won(
    trader: TraderHarness, sim: RunningSimulator
) -> None:
    response = await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 20, "price": 6_500})
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["status"] == "SUBMITTED" and order["broker_order_no"]

    await advance_market(sim, 60)
    detail = await trader.wait_status(order["id"], "FILLED")

    assert detail["order"]["filled_quantity"] == 20
    assert sum(f["quantity"] for f in detail["fills"]) == 20
    assert detail["order"]["commission"] == commission(detail["order"]["filled_value"])
    assert [e["to_status"] for e in detail["events"] if e["kind"] != "order.fill"][:3] == ["NEW", "NEW", "SUBMITTED"]
    assert detail["events"][-1]["to_status"] == "FILLED"
    assert sim_position(sim) == (20, detail["order"]["filled_value"])
    await ledger_matches_simulator(trader, sim)
    for kind in ("order.submitted.v1", "order.accepted.v1", "fill.executed.v1"):
        await trader.wait_event(kind)


async def test_partial_fills_then_cancel_keep_the_filled_part(trader: TraderHarness, sim: RunningSimulator) -> None:
    # Ticks at 10:00:10 and :20 trade 7 and 71 shares: a 500-share order fills in parts.
    response = await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 500, "price": 6_490})
    order_id = response.json()["id"]
    await advance_market(sim, 20)
    partial = await trader.wait_status(order_id, "PARTIALLY_FILLED")
    filled = partial["order"]["filled_quantity"]
    assert 0 < filled < 500

    cancelled = await trader.http.post(f"/trade/orders/{order_id}/cancel", headers={"X-Tradebot-Role": "trader"})
    assert cancelled.status_code == 200, cancelled.text
    final = await trader.wait_status(order_id, "CANCELLED")

    assert final["order"]["filled_quantity"] == sim_position(sim)[0] > 0
    assert any(e["kind"] == "order.cancel_requested" for e in final["events"])
    await advance_market(sim, 60)
    assert sim_position(sim)[0] == final["order"]["filled_quantity"]
    await ledger_matches_simulator(trader, sim)
    await trader.wait_event("order.cancelled.v1")


async def test_selling_books_realised_pnl_commission_and_tax_like_the_broker(
    trader: TraderHarness, sim: RunningSimulator
) -> None:
    buy = (await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 30})).json()
    await advance_market(sim, 60)
    await trader.wait_status(buy["id"], "FILLED")
    sell = (await trader.http.post("/trade/sell", json={"symbol": SYMBOL, "quantity": 12})).json()
    await advance_market(sim, 60)
    detail = await trader.wait_status(sell["id"], "FILLED")

    value = detail["order"]["filled_value"]
    assert detail["order"]["tax"] == sell_tax(value, sim.clock.now().date())
    assert detail["order"]["commission"] == commission(value)
    assert sim_position(sim)[0] == 18
    await ledger_matches_simulator(trader, sim)
    pnl = (await trader.http.get("/trade/pnl")).json()
    assert pnl["fees_paid"] == sum(o.commission + o.tax for o in paper_account(sim).orders)


async def test_resubmitting_the_same_key_does_not_trade_twice(trader: TraderHarness, sim: RunningSimulator) -> None:
    body = {"symbol": SYMBOL, "quantity": 5, "price": 6_490, "idempotency_key": "client-key-1"}
    first, second, third = await asyncio.gather(*(trader.http.post("/trade/buy", json=body) for _ in range(3)))
    again = await trader.http.post("/trade/buy", json=body)

    ids = {r.json()["id"] for r in (first, second, third, again)}
    assert len(ids) == 1
    assert len(paper_account(sim).orders) == 1

    decision = {"decision_id": "decision-42", "symbol": SYMBOL, "action": "buy", "quantity": 3}
    results = [(await trader.http.post("/trade/execute", json=decision)).json() for _ in range(2)]
    assert results[0]["created"] is True and results[1]["created"] is False
    assert results[0]["order"]["id"] == results[1]["order"]["id"]
    assert len(paper_account(sim).orders) == 2


async def test_an_order_the_broker_refuses_is_rejected_with_its_reason(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    # With the trader's own sellable check off, the broker's (APBK0400) is the one that says no.
    settings = trader_settings(risk=RiskLimits(check_sellable=False, max_orders_per_minute=1000))
    harness = await TraderHarness(sqlite_url, sim, tmp_path, settings).start()
    try:
        response = await harness.http.post("/trade/sell", json={"symbol": SYMBOL, "quantity": 10, "price": 6_490})
        order = response.json()
        assert order["status"] == "REJECTED"
        assert "APBK0400" in order["reject_reason"]
        assert order["broker_order_no"] is None
        await harness.wait_event("order.rejected.v1")
    finally:
        await harness.stop()


async def test_fills_found_by_polling_alone_are_booked_once(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    harness = await TraderHarness(sqlite_url, sim, tmp_path, trader_settings(use_fill_notices=False)).start()
    try:
        order = (await harness.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 100, "price": 6_500})).json()
        await advance_market(sim, 120)
        detail = await harness.wait_status(order["id"], "FILLED")
        assert all(f["source"] == "poll" for f in detail["fills"])
        assert sum(f["gross"] for f in detail["fills"]) == detail["order"]["filled_value"] == sim_position(sim)[1]
        await ledger_matches_simulator(harness, sim)
    finally:
        await harness.stop()


async def test_history_filters_and_pages(trader: TraderHarness, sim: RunningSimulator) -> None:
    for i in range(3):
        await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1 + i, "price": 6_000})
    await trader.http.post("/trade/sell", json={"symbol": SYMBOL, "quantity": 1, "price": 6_000})  # nothing held

    page = (await trader.http.get("/trade/history", params={"limit": 2})).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    buys = (await trader.http.get("/trade/history", params={"side": "buy", "status": "SUBMITTED"})).json()
    assert buys["total"] == 3
    rejected = (await trader.http.get("/trade/history", params={"status": "REJECTED"})).json()
    assert rejected["total"] == 1 and rejected["items"][0]["reject_reason"].startswith("risk:sellable_quantity")
