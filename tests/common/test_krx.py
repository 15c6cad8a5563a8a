"""KRX rules against hand-computed cases."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from common.krx import (
    commission,
    in_regular_session,
    is_on_tick,
    price_limits,
    round_to_tick,
    sell_tax,
    sell_tax_rate,
    tick_size,
    ticks_away,
)


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (1, 1),
        (1999, 1),
        (2000, 5),
        (4999, 5),
        (5000, 10),
        (19999, 10),
        (20000, 50),
        (49999, 50),
        (50000, 100),
        (199999, 100),
        (200000, 500),
        (499999, 500),
        (500000, 1000),
        (3_000_000, 1000),
    ],
)
def test_tick_table(price: int, tick: int) -> None:
    assert tick_size(price) == tick


def test_rounding_stays_on_the_grid_across_table_bounds() -> None:
    assert round_to_tick(71_950) == 71_900
    assert round_to_tick(71_950, up=True) == 72_000
    assert round_to_tick(4_997, up=True) == 5_000
    assert all(is_on_tick(round_to_tick(p, up=up)) for p in range(1, 60_000, 7) for up in (False, True))
    assert ticks_away(1_999, 2) == 2_005 and ticks_away(2_005, -2) == 1_999


def test_price_limits_by_date() -> None:
    # ±30% since 2015-06-15: 71,900 × 1.3 = 93,470 → 93,400; × 0.7 = 50,330 → 50,400 (inside, on the grid)
    assert price_limits(71_900, date(2024, 1, 2)) == (50_400, 93_400)
    # ±15% before: 10,000 → 8,500 / 11,500
    assert price_limits(10_000, date(2010, 1, 4)) == (8_500, 11_500)


def test_fees_in_whole_won() -> None:
    assert commission(1_000_000) == 150
    assert commission(71_900 * 3) == 32  # 32.355 rounded down
    assert sell_tax_rate(date(2019, 6, 2)) == sell_tax_rate(date(2000, 1, 1))
    assert sell_tax(1_000_000, date(2019, 6, 3)) == 2_500
    assert sell_tax(1_000_000, date(2025, 6, 1)) == 1_500
    assert sell_tax(1_000_000, date(2026, 3, 1)) == 2_000


def test_regular_session_is_0900_to_1530_kst_on_weekdays() -> None:
    assert in_regular_session(datetime(2024, 1, 2, 0, 0, tzinfo=UTC))  # 09:00 KST Tuesday
    assert not in_regular_session(datetime(2024, 1, 2, 6, 30, tzinfo=UTC))  # 15:30 KST
    assert not in_regular_session(datetime(2024, 1, 6, 1, 0, tzinfo=UTC))  # Saturday
