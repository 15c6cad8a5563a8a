"""KRX market rules shared by the simulator, the trader's risk engine and the training environment.

Tick sizes (one table for KOSPI and KOSDAQ since 2023-01-25), daily price limits by date,
regular session hours in KST, commission and the securities transaction (sell) tax by date.
Prices are integer KRW; fees are computed with Decimal and rounded down to whole won.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction

from common.clock import to_kst

# (upper bound exclusive, tick) — kis-api.md §6.3
_TICK_TABLE: tuple[tuple[int, int], ...] = (
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
)
_TOP_TICK = 1_000

SESSION_OPEN = time(9, 0)
SESSION_CLOSE = time(15, 30)

COMMISSION_RATE = Decimal("0.00015")

# Sell tax for KOSPI stocks (transaction tax + rural special tax), effective from each date.
SELL_TAX_SCHEDULE: tuple[tuple[date, Decimal], ...] = (
    (date(1900, 1, 1), Decimal("0.0030")),
    (date(2019, 6, 3), Decimal("0.0025")),
    (date(2021, 1, 1), Decimal("0.0023")),
    (date(2023, 1, 1), Decimal("0.0020")),
    (date(2024, 1, 1), Decimal("0.0018")),
    (date(2025, 1, 1), Decimal("0.0015")),
    (date(2026, 1, 1), Decimal("0.0020")),
)

# Daily price limit as a fraction of the base price, effective from each date.
PRICE_LIMIT_SCHEDULE: tuple[tuple[date, Decimal], ...] = (
    (date(1900, 1, 1), Decimal("0.15")),
    (date(2015, 6, 15), Decimal("0.30")),
)


def tick_size(price: int) -> int:
    """The tick (호가단위) at ``price``."""
    for bound, tick in _TICK_TABLE:
        if price < bound:
            return tick
    return _TOP_TICK


def is_on_tick(price: int) -> bool:
    return price > 0 and price % tick_size(price) == 0


def round_to_tick(price: int, *, up: bool = False) -> int:
    """Round to the tick grid: down by default (a buy limit never pays more), up on request."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    tick = tick_size(price)
    down = price - price % tick
    # Every table bound is a multiple of the next tick, so one tick up is always on the grid.
    return down if not up or down == price else down + tick


def ticks_away(price: int, n: int) -> int:
    """``price`` moved by ``n`` ticks (negative moves down), following the table across bounds."""
    current = price
    step = 1 if n > 0 else -1
    for _ in range(abs(n)):
        if step > 0:
            current += tick_size(current)
        else:
            current -= tick_size(current - 1) if current > 1 else 0
    return current


def _effective(schedule: tuple[tuple[date, Decimal], ...], day: date) -> Decimal:
    rate = schedule[0][1]
    for start, value in schedule:
        if day >= start:
            rate = value
    return rate


def price_limit_rate(day: date) -> Decimal:
    return _effective(PRICE_LIMIT_SCHEDULE, day)


def price_limits(base_price: int, day: date) -> tuple[int, int]:
    """(lower, upper) limit prices for a day whose base (previous close) is ``base_price``.

    The raw ±rate bound is moved inside onto the tick grid: the upper limit rounds down and the
    lower limit rounds up, as KRX publishes them.
    """
    rate = price_limit_rate(day)
    raw_upper = int((Decimal(base_price) * (1 + rate)).to_integral_value(rounding=ROUND_DOWN))
    raw_lower_dec = Decimal(base_price) * (1 - rate)
    raw_lower = int(raw_lower_dec.to_integral_value(rounding=ROUND_DOWN))
    if Decimal(raw_lower) < raw_lower_dec:
        raw_lower += 1
    upper = round_to_tick(raw_upper)
    lower = max(1, round_to_tick(raw_lower, up=True))
    return lower, upper


def sell_tax_rate(day: date) -> Decimal:
    return _effective(SELL_TAX_SCHEDULE, day)


def commission(gross: int, rate: Decimal = COMMISSION_RATE) -> int:
    return int((Decimal(gross) * rate).to_integral_value(rounding=ROUND_DOWN))


def sell_tax(gross: int, day: date) -> int:
    return int((Decimal(gross) * sell_tax_rate(day)).to_integral_value(rounding=ROUND_DOWN))


def is_weekday(day: date) -> bool:
    return day.weekday() < 5


def in_regular_session(instant: datetime) -> bool:
    """True during 09:00–15:30 KST on a weekday (holidays are the calendar's business)."""
    local = to_kst(instant)
    return is_weekday(local.date()) and SESSION_OPEN <= local.time() < SESSION_CLOSE


def cost_after_sale(basis_cost: int, basis_quantity: int, quantity_after: int) -> int:
    """Purchase amount of the shares left after a sale, at average cost, rounded half to even.

    The basis is the position's cost and quantity after its last buy: scaling it (rather than
    taking a rounded share off the current cost fill by fill) gives the same figure however a
    sale's fills are grouped — one notice per fill or one poll for several.
    """
    if quantity_after <= 0 or basis_quantity <= 0:
        return 0
    return round(Fraction(basis_cost * quantity_after, basis_quantity))
