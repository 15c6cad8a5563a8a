"""Each risk rule, on its own, and switched off; and the engine in front of the real broker."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from common.clock import KST
from common.kis.sim import RunningSimulator
from trader.broker import PriceBand
from trader.risk import OrderIntent, RiskContext, RiskEngine, RiskViolation
from trader.settings import RiskLimits

from .conftest import SYMBOL, TraderHarness, paper_account

BAND = PriceBand(base=50_000, lower=35_000, upper=65_000, last=50_000)
OPEN = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
CTX = RiskContext(
    now=OPEN,
    kill_switch_engaged=False,
    cash_available=10_000_000,
    held_quantity=100,
    pending_buy_quantity=0,
    pending_sell_quantity=0,
    gross_exposure=5_000_000,
    orders_last_minute=0,
    equity=15_000_000,
    day_start_equity=15_000_000,
    peak_equity=15_000_000,
)
NO_LIMITS = RiskLimits(
    max_position_krw=None,
    max_gross_exposure_krw=None,
    max_order_krw=None,
    max_orders_per_minute=None,
    daily_loss_limit_krw=None,
    max_drawdown=None,
)


def violation(intent: OrderIntent, ctx: RiskContext = CTX, limits: RiskLimits = NO_LIMITS) -> str:
    with pytest.raises(RiskViolation) as caught:
        RiskEngine(limits).check(intent, BAND, ctx)
    return caught.value.rule


def passes(intent: OrderIntent, ctx: RiskContext = CTX, limits: RiskLimits = NO_LIMITS) -> int | None:
    return RiskEngine(limits).check(intent, BAND, ctx).price


BUY_10 = OrderIntent("buy", SYMBOL, 10, 50_000)
SELL_10 = OrderIntent("sell", SYMBOL, 10, 50_000)


def test_a_sale_cannot_exceed_the_sellable_quantity() -> None:
    assert violation(replace(SELL_10, quantity=101)) == "sellable_quantity"
    assert violation(SELL_10, replace(CTX, pending_sell_quantity=95)) == "sellable_quantity"
    assert (
        passes(replace(SELL_10, quantity=101), limits=NO_LIMITS.model_copy(update=dict(check_sellable=False))) == 50_000
    )


def test_a_buy_needs_cash_for_value_and_commission() -> None:
    exact = 10 * 50_000
    assert passes(BUY_10, replace(CTX, cash_available=exact + 75)) == 50_000  # 0.015% commission = 75 KRW
    assert violation(BUY_10, replace(CTX, cash_available=exact + 74)) == "cash"
    # A market buy reserves at the upper limit, as the broker does.
    assert violation(replace(BUY_10, price=None), replace(CTX, cash_available=exact + 75)) == "cash"


def test_max_order_value() -> None:
    limits = NO_LIMITS.model_copy(update=dict(max_order_krw=499_999))
    assert violation(BUY_10, limits=limits) == "max_order_value"
    assert violation(SELL_10, limits=limits) == "max_order_value"
    assert passes(BUY_10, limits=limits.model_copy(update=dict(max_order_krw=500_000))) == 50_000


def test_max_position_per_symbol_counts_held_pending_and_new_shares() -> None:
    limits = NO_LIMITS.model_copy(update=dict(max_position_krw=6_000_000))
    assert passes(BUY_10, limits=limits) == 50_000  # (100 + 10) × 50,000 = 5.5M
    assert violation(BUY_10, replace(CTX, pending_buy_quantity=11), limits) == "max_position"
    assert passes(SELL_10, replace(CTX, held_quantity=200), limits) == 50_000  # sales reduce it


def test_max_gross_exposure() -> None:
    limits = NO_LIMITS.model_copy(update=dict(max_gross_exposure_krw=5_400_000))
    assert violation(BUY_10, limits=limits) == "max_gross_exposure"
    assert passes(BUY_10, limits=limits.model_copy(update=dict(max_gross_exposure_krw=5_500_000))) == 50_000


def test_max_orders_per_minute() -> None:
    limits = NO_LIMITS.model_copy(update=dict(max_orders_per_minute=5))
    assert passes(BUY_10, replace(CTX, orders_last_minute=4), limits) == 50_000
    assert violation(SELL_10, replace(CTX, orders_last_minute=5), limits) == "order_rate"


def test_daily_loss_limit_blocks_buys_but_not_sales() -> None:
    limits = NO_LIMITS.model_copy(update=dict(daily_loss_limit_krw=1_000_000))
    down = replace(CTX, equity=14_000_000)
    assert violation(BUY_10, down, limits) == "daily_loss_limit"
    assert passes(SELL_10, down, limits) == 50_000
    assert passes(BUY_10, replace(CTX, equity=14_000_001), limits) == 50_000


def test_drawdown_from_peak_asks_for_the_kill_switch() -> None:
    limits = NO_LIMITS.model_copy(update=dict(max_drawdown=Decimal("0.10")))
    with pytest.raises(RiskViolation) as caught:
        RiskEngine(limits).check(BUY_10, BAND, replace(CTX, peak_equity=20_000_000, equity=18_000_000))
    assert caught.value.rule == "drawdown" and caught.value.engage_kill_switch
    assert passes(BUY_10, replace(CTX, peak_equity=20_000_000, equity=18_000_001), limits) == 50_000


def test_orders_outside_the_krx_session_are_refused() -> None:
    for hour, minute in ((8, 59), (15, 30), (20, 0)):
        assert violation(BUY_10, replace(CTX, now=OPEN.replace(hour=hour, minute=minute))) == "session_hours"
    saturday = datetime(2024, 3, 9, 10, 0, tzinfo=KST)
    assert violation(BUY_10, replace(CTX, now=saturday)) == "session_hours"
    assert (
        passes(BUY_10, replace(CTX, now=saturday), NO_LIMITS.model_copy(update=dict(enforce_session_hours=False)))
        == 50_000
    )


def test_prices_are_rounded_to_the_tick_and_held_within_the_daily_limits() -> None:
    assert passes(replace(BUY_10, price=50_070)) == 50_000  # tick 100: a buy rounds down
    assert passes(replace(SELL_10, price=50_030)) == 50_100  # a sale rounds up
    assert violation(replace(BUY_10, price=65_100)) == "price_limits"
    assert violation(replace(SELL_10, price=34_950)) == "price_limits"
    assert (
        passes(replace(BUY_10, price=65_100), limits=NO_LIMITS.model_copy(update=dict(enforce_price_limits=False)))
        == 65_100
    )


def test_the_kill_switch_halts_every_order() -> None:
    assert violation(SELL_10, replace(CTX, kill_switch_engaged=True)) == "kill_switch"


async def test_a_rule_violation_is_a_stored_rejection_and_never_reaches_the_broker(
    trader: TraderHarness, sim: RunningSimulator
) -> None:
    too_big = {"symbol": SYMBOL, "quantity": 5_000, "price": 6_490, "idempotency_key": "big"}  # 32M > 20M max order
    order = (await trader.http.post("/trade/buy", json=too_big)).json()
    assert order["status"] == "REJECTED" and order["reject_reason"].startswith("risk:max_order_value")
    again = (await trader.http.post("/trade/buy", json=too_big)).json()
    assert again["id"] == order["id"]
    off_limits = (await trader.http.post("/trade/buy", json={"symbol": SYMBOL, "quantity": 1, "price": 9_000})).json()
    assert off_limits["reject_reason"].startswith("risk:price_limits")
    assert paper_account(sim).orders == []
