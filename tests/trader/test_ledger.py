"""The ledger books positions the way the broker does, however the fills of an order are grouped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.krx import cost_after_sale
from trader.ledger import FillCosts, apply_fill
from trader.models import Position, TraderAccount

NO_FEES = FillCosts(commission=0, tax=0)


def position() -> Position:
    return Position(
        account="a",
        symbol="005930",
        quantity=0,
        cost=0,
        realised_pnl=0,
        last_price=0,
        updated_at=datetime(2024, 3, 4, tzinfo=UTC),
        basis_cost=0,
        basis_quantity=0,
    )


def ledger() -> TraderAccount:
    return TraderAccount(account="a", cash=10_000_000, realised_pnl=0, fees_paid=0, peak_equity=10_000_000, day=None)


def book(fills: list[tuple[str, int, int]]) -> tuple[int, int]:
    held, account = position(), ledger()
    for side, quantity, price in fills:
        apply_fill(account, held, side, quantity, quantity * price, NO_FEES)
    return held.quantity, held.cost


@pytest.mark.parametrize("grouping", [[10], [3, 7], [1, 1, 1, 7], [9, 1]])
def test_a_sale_leaves_the_same_cost_however_its_fills_are_grouped(grouping: list[int]) -> None:
    # 13 shares bought at two prices: an average cost of 71,907.69… won, not a whole number.
    buys = [("buy", 6, 71_900), ("buy", 7, 71_914)]
    whole = book([*buys, ("sell", 10, 72_000)])
    assert book(buys + [("sell", q, 72_000) for q in grouping]) == whole
    assert whole == (3, cost_after_sale(6 * 71_900 + 7 * 71_914, 13, 3))
