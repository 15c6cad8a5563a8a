"""Lost acknowledgements: a crash between submit and ack, and timeouts whose outcome is unknown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.kis import Balance, ExecutionNotice, OrderAck, OrderOutcomeUnknown, OrderRecord
from common.kis.sim import RunningSimulator
from trader.broker import KisBroker, PriceBand, Side

from .conftest import SYMBOL, TraderHarness, advance_market, paper_account


class SimulatedCrash(BaseException):
    """The process dies right after the broker accepted the order, before the ack is stored."""


class FaultyBroker:
    """The real broker with a fault around ``place``: crash after sending, or lose the answer."""

    def __init__(self, inner: KisBroker, fault: str) -> None:
        self.inner = inner
        self.fault = fault
        self.place_calls = 0

    @property
    def account_key(self) -> str:
        return self.inner.account_key

    async def place(self, side: Side, symbol: str, quantity: int, price: int | None) -> OrderAck:
        self.place_calls += 1
        if self.fault == "lost_before_sending" and self.place_calls == 1:
            raise OrderOutcomeUnknown("read timeout on order-cash")
        ack = await self.inner.place(side, symbol, quantity, price)
        if self.fault == "crash_after_send":
            raise SimulatedCrash
        if self.fault == "lost_answer":
            raise OrderOutcomeUnknown("read timeout on order-cash")
        return ack

    async def cancel(self, org_no: str, order_no: str) -> OrderAck:
        return await self.inner.cancel(org_no, order_no)

    async def daily_orders(self, day: date) -> tuple[OrderRecord, ...]:
        return await self.inner.daily_orders(day)

    async def balance(self) -> Balance:
        return await self.inner.balance()

    async def price_band(self, symbol: str, day: date) -> PriceBand:
        return await self.inner.price_band(symbol, day)

    def notices(self) -> AsyncIterator[ExecutionNotice]:
        return self.inner.notices()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_trader_killed_between_submit_and_ack_restarts_without_a_duplicate(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    body: dict[str, Any] = {"decision_id": "d-crash-1", "symbol": SYMBOL, "action": "buy", "quantity": 40}
    crashing = await TraderHarness(
        sqlite_url, sim, tmp_path, wrap_broker=lambda inner: FaultyBroker(inner, "crash_after_send")
    ).start()
    try:
        with pytest.raises((SimulatedCrash, httpx.HTTPError)):
            await crashing.http.post("/trade/execute", json=body)
    finally:
        await crashing.stop()
    assert len(paper_account(sim).orders) == 1  # the broker has it; our row is NEW without an order number

    restarted = await TraderHarness(sqlite_url, sim, tmp_path).start()
    try:
        again = (await restarted.http.post("/trade/execute", json=body)).json()
        assert again["created"] is False
        order = again["order"]
        assert order["status"] == "SUBMITTED"
        assert order["broker_order_no"] == paper_account(sim).orders[0].odno.lstrip("0")
        assert len(paper_account(sim).orders) == 1

        await advance_market(sim, 120)
        detail = await restarted.wait_status(order["id"], "FILLED")
        held = paper_account(sim).positions[SYMBOL]
        positions = (await restarted.http.get("/trade/positions")).json()
        assert [(p["symbol"], p["quantity"], p["cost"]) for p in positions] == [(SYMBOL, held.qty, held.cost)]
        assert held.qty == 40 and detail["order"]["filled_quantity"] == 40
        assert "order.adopted" in [e["kind"] for e in detail["events"]]
    finally:
        await restarted.stop()


async def test_a_lost_answer_is_resolved_by_asking_the_broker_not_by_resending(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    brokers: list[FaultyBroker] = []

    def wrap(inner: KisBroker) -> FaultyBroker:
        brokers.append(FaultyBroker(inner, "lost_answer"))
        return brokers[-1]

    harness = await TraderHarness(sqlite_url, sim, tmp_path, wrap_broker=wrap).start()
    try:
        order = (await harness.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 7, "price": 6_490})).json()
        assert order["status"] == "SUBMITTED"
        assert brokers[0].place_calls == 1
        assert len(paper_account(sim).orders) == 1
        assert order["broker_order_no"] == paper_account(sim).orders[0].odno.lstrip("0")
    finally:
        await harness.stop()


async def test_an_order_that_never_reached_the_broker_is_sent_again_once(
    sqlite_url: str, sim: RunningSimulator, tmp_path: Path
) -> None:
    brokers: list[FaultyBroker] = []

    def wrap(inner: KisBroker) -> FaultyBroker:
        brokers.append(FaultyBroker(inner, "lost_before_sending"))
        return brokers[-1]

    harness = await TraderHarness(sqlite_url, sim, tmp_path, wrap_broker=wrap).start()
    try:
        order = (await harness.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 7, "price": 6_490})).json()
        assert order["status"] == "SUBMITTED"
        assert brokers[0].place_calls == 2
        assert len(paper_account(sim).orders) == 1
        events = (await harness.order(order["id"]))["events"]
        assert "order.resubmitting" in [e["kind"] for e in events]
    finally:
        await harness.stop()
