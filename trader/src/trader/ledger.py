"""Cash, positions and P&L arithmetic, in whole KRW, the way the broker books them.

Commission and sell tax are charged on an order's *cumulative* filled value and rounded down
to the won (``common.krx``), so each fill pays the difference between the order's fees after it
and before it. A sale leaves the shares held at the average cost of the last buy's basis,
rounded half to even (``common.krx.cost_after_sale``) — the same numbers the broker's balance
shows however the fills are grouped, so reconciliation can compare to the won.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from common.krx import commission, cost_after_sale, sell_tax

from .models import Order, Position, TraderAccount


@dataclass(frozen=True, slots=True)
class FillCosts:
    commission: int
    tax: int


def fill_costs(order: Order, gross: int, day: date) -> FillCosts:
    """Fees of a fill of ``gross`` KRW on ``order`` (before the order's totals are updated)."""
    value_after = order.filled_value + gross
    fee = commission(value_after) - order.commission
    tax = sell_tax(value_after, day) - order.tax if order.side == "sell" else 0
    return FillCosts(commission=max(0, fee), tax=max(0, tax))


def released_cost(position: Position, quantity: int) -> int:
    """The average cost of ``quantity`` of the shares held: what a sale of them takes off the position."""
    if position.quantity <= 0:
        return 0
    if position.basis_quantity < position.quantity:
        # A position booked before bases were kept (or adopted from the broker): its own figures.
        position.basis_cost, position.basis_quantity = position.cost, position.quantity
    remaining = cost_after_sale(position.basis_cost, position.basis_quantity, position.quantity - quantity)
    return position.cost - remaining


def apply_fill(
    ledger: TraderAccount, position: Position, side: str, quantity: int, gross: int, costs: FillCosts
) -> int:
    """Book a fill on the cash ledger and the position; returns the realised P&L (before fees)."""
    realised = 0
    if side == "buy":
        ledger.cash -= gross + costs.commission
        position.quantity += quantity
        position.cost += gross
        position.basis_cost, position.basis_quantity = position.cost, position.quantity
    else:
        release = released_cost(position, quantity)
        ledger.cash += gross - costs.commission - costs.tax
        position.quantity -= quantity
        position.cost -= release
        realised = gross - release
        position.realised_pnl += realised
        ledger.realised_pnl += realised
    ledger.fees_paid += costs.commission + costs.tax
    position.last_price = gross // quantity if quantity else position.last_price
    return realised


def market_value(positions: list[Position]) -> int:
    return sum(p.quantity * p.last_price for p in positions)


def equity(ledger: TraderAccount, positions: list[Position]) -> int:
    return ledger.cash + market_value(positions)


def unrealised_pnl(position: Position) -> int:
    return position.quantity * position.last_price - position.cost


def buy_cost(quantity: int, unit_price: int) -> int:
    """Cash a buy needs: the value plus its commission."""
    gross = quantity * unit_price
    return gross + commission(gross)


def affordable_quantity(cash: int, unit_price: int) -> int:
    """The largest quantity whose cost with commission fits in ``cash``."""
    if unit_price <= 0 or cash <= 0:
        return 0
    quantity = cash // unit_price
    while quantity > 0 and buy_cost(quantity, unit_price) > cash:
        quantity -= 1
    return quantity
