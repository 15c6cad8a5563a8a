"""The risk engine: every order passes every enabled rule, or is rejected naming the rule.

Pure: it sees a snapshot of the account (``RiskContext``) and the order, and answers with the
price to use (rounded to the tick grid) or the violation. Rules that protect against losses
(daily loss, drawdown) block only orders that add risk — a sale can always reduce a position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from common.krx import in_regular_session, round_to_tick

from .broker import PriceBand, Side
from .ledger import buy_cost
from .settings import RiskLimits


@dataclass(frozen=True, slots=True)
class RiskContext:
    """The account as the engine sees it when an order arrives."""

    now: datetime
    kill_switch_engaged: bool
    cash_available: int  # ledger cash minus what open buys have reserved
    held_quantity: int  # shares of this symbol held
    pending_buy_quantity: int  # open buy orders of this symbol, unfilled part
    pending_sell_quantity: int  # open sell orders of this symbol, unfilled part
    gross_exposure: int  # value of every position at its last price
    orders_last_minute: int
    equity: int
    day_start_equity: int | None
    peak_equity: int


@dataclass(frozen=True, slots=True)
class OrderIntent:
    side: Side
    symbol: str
    quantity: int
    price: int | None  # None: market order


@dataclass(frozen=True, slots=True)
class RiskApproval:
    price: int | None  # the limit price on the tick grid


class RiskViolation(Exception):
    """An order broke a rule; ``rule`` names it for the caller, the audit log and the tests."""

    def __init__(self, rule: str, reason: str, *, engage_kill_switch: bool = False) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.engage_kill_switch = engage_kill_switch


class RiskEngine:
    """Checks one order against the configured limits."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits

    def check(self, intent: OrderIntent, band: PriceBand, ctx: RiskContext) -> RiskApproval:
        """The approved price, or ``RiskViolation`` for the first rule the order breaks."""
        limits = self.limits
        buying = intent.side == "buy"
        if ctx.kill_switch_engaged:
            raise RiskViolation("kill_switch", "the kill switch is engaged: new orders are halted")
        if limits.enforce_session_hours and not in_regular_session(ctx.now):
            raise RiskViolation("session_hours", "outside the KRX regular session (09:00-15:30 KST, weekdays)")
        if intent.quantity <= 0:
            raise RiskViolation("quantity", "quantity must be at least one share")

        price = intent.price
        if price is not None:
            # A buy never pays more than asked, a sale never gets less: round inside the limit.
            price = round_to_tick(price, up=not buying)
            if limits.enforce_price_limits and not band.lower <= price <= band.upper:
                raise RiskViolation(
                    "price_limits",
                    f"price {price} is outside today's limits {band.lower}-{band.upper} (±30% of {band.base})",
                )
        # What the order is worth, and what a buy must reserve (a market buy reserves at the upper limit).
        value_price = price if price is not None else band.last
        reserve_price = price if price is not None else band.upper
        order_value = intent.quantity * value_price

        if not buying and limits.check_sellable:
            sellable = ctx.held_quantity - ctx.pending_sell_quantity
            if intent.quantity > sellable:
                raise RiskViolation("sellable_quantity", f"sell {intent.quantity} but only {max(0, sellable)} sellable")
        if buying and limits.check_cash:
            needed = buy_cost(intent.quantity, reserve_price)
            if needed > ctx.cash_available:
                raise RiskViolation(
                    "cash", f"buy needs {needed} KRW with commission, {max(0, ctx.cash_available)} KRW available"
                )
        if limits.max_order_krw is not None and order_value > limits.max_order_krw:
            raise RiskViolation("max_order_value", f"order value {order_value} KRW exceeds {limits.max_order_krw} KRW")
        if buying and limits.max_position_krw is not None:
            shares = ctx.held_quantity + ctx.pending_buy_quantity + intent.quantity
            if shares * value_price > limits.max_position_krw:
                raise RiskViolation(
                    "max_position",
                    f"position would be {shares * value_price} KRW, above {limits.max_position_krw} KRW",
                )
        if buying and limits.max_gross_exposure_krw is not None:
            exposure = ctx.gross_exposure + ctx.pending_buy_quantity * value_price + order_value
            if exposure > limits.max_gross_exposure_krw:
                raise RiskViolation(
                    "max_gross_exposure",
                    f"gross exposure would be {exposure} KRW, above {limits.max_gross_exposure_krw} KRW",
                )
        if limits.max_orders_per_minute is not None and ctx.orders_last_minute >= limits.max_orders_per_minute:
            raise RiskViolation(
                "order_rate", f"{ctx.orders_last_minute} orders in the last minute (max {limits.max_orders_per_minute})"
            )
        if buying and limits.daily_loss_limit_krw is not None and ctx.day_start_equity is not None:
            loss = ctx.day_start_equity - ctx.equity
            if loss >= limits.daily_loss_limit_krw:
                raise RiskViolation(
                    "daily_loss_limit", f"down {loss} KRW today (limit {limits.daily_loss_limit_krw} KRW): buys blocked"
                )
        if limits.max_drawdown is not None and ctx.peak_equity > 0:
            drawdown = Decimal(ctx.peak_equity - ctx.equity) / Decimal(ctx.peak_equity)
            if drawdown >= limits.max_drawdown:
                raise RiskViolation(
                    "drawdown",
                    f"drawdown {drawdown:.2%} from peak {ctx.peak_equity} KRW "
                    f"reached the limit {limits.max_drawdown:.2%}",
                    engage_kill_switch=True,
                )
        return RiskApproval(price=price)
