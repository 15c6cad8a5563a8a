"""The columnar tick path gives exactly what the per-tick reference rules give."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from common.contracts import Tick
from data_processor import validation as v
from data_processor.aggregation import minute_bars, minute_bars_of
from data_processor.ticks import TickColumns


def reference_check_ticks(ticks: Sequence[Tick], base_price: Callable[[str, date], int | None]) -> v.Checked[Tick]:
    """The per-tick rules as they were written before the columnar path (the oracle)."""
    result: v.Checked[Tick] = v.Checked()
    bands: dict[tuple[str, date], tuple[int, int] | None] = {}
    seen: dict[tuple[str, datetime, int], int] = {}
    for position, tick in enumerate(ticks):
        local = v.kst_wall(tick.ts)
        day = local.date()
        reason, detail = "", ""
        if tick.volume <= 0:
            reason, detail = v.NON_POSITIVE_VOLUME, f"volume {tick.volume}: a trade print has positive volume"
        elif not (v.is_trading_day(day) and v.SESSION_OPEN <= local.time() <= v.SESSION_LAST_PRINT):
            reason, detail = v.OUTSIDE_SESSION, f"{day} {local.time()} KST is outside the 09:00–15:30 session"
        else:
            key = (tick.symbol, day)
            if key not in bands:
                base = base_price(tick.symbol, day)
                bands[key] = None if base is None else v.limit_band(base, day)
            band = bands[key]
            if band is not None and not band[0] <= tick.price <= band[1]:
                reason = v.OUTSIDE_PRICE_LIMITS
                detail = f"price {tick.price} outside the day's band {band[0]}–{band[1]}"
        if not reason:
            identity = (tick.symbol, tick.ts, tick.seq)
            first = seen.get(identity)
            if first is not None and ticks[first] != tick:
                reason = v.DUPLICATE_IN_BATCH
                detail = f"same (symbol, ts, seq) as position {first} with different values"
            elif first is None:
                seen[identity] = position
        if reason:
            result.rejected.append(
                v.Rejection(position, reason, detail, v.record_of(tick), "tick", tick.symbol, None, tick.ts)
            )
        else:
            result.accepted.append(tick)
    return result


def random_ticks(rng: random.Random, count: int, start: datetime) -> list[Tick]:
    ticks: list[Tick] = []
    for _ in range(count):
        if ticks and rng.random() < 0.05:
            copy = rng.choice(ticks)
            # An exact copy, or the same identity with another price.
            ticks.append(copy if rng.random() < 0.5 else copy.model_copy(update={"price": copy.price + 50}))
            continue
        ts = start + timedelta(seconds=rng.randrange(0, 3 * 86_400), microseconds=rng.choice((0, rng.randrange(10**6))))
        ticks.append(
            Tick(
                symbol=rng.choice(("005930", "000660", "Q500001")),
                ts=ts,
                seq=rng.randrange(3),
                price=rng.randrange(60_000, 80_000),
                volume=rng.choice((0, 1, 5, 100)),
            )
        )
    return ticks


@pytest.mark.parametrize(
    "start",
    [
        datetime(2024, 1, 4, 23, 0, tzinfo=UTC),  # Friday 08:00 KST over a weekend
        datetime(1998, 12, 4, 23, 0, tzinfo=UTC),  # Saturday sessions still existed
        datetime(1987, 7, 1, 0, 0, tzinfo=UTC),  # Korean summer time: the tz database path
    ],
)
def test_columnar_validation_matches_the_per_tick_rules(start: datetime) -> None:
    rng = random.Random(start.year)
    ticks = random_ticks(rng, 3_000, start)
    bases = {"005930": 70_000, "000660": None, "Q500001": 72_000}

    def base(symbol: str, day: date) -> int | None:
        return bases[symbol]

    expected = reference_check_ticks(ticks, base)
    checked = v.check_ticks(ticks, base)

    assert checked.accepted == expected.accepted
    assert checked.rejected == expected.rejected
    assert {r.reason for r in checked.rejected} >= {v.NON_POSITIVE_VOLUME, v.OUTSIDE_SESSION, v.DUPLICATE_IN_BATCH}


def test_columnar_minute_bars_match_the_reference_aggregation() -> None:
    ticks = [t for t in random_ticks(random.Random(7), 3_000, datetime(2024, 1, 2, 0, 0, tzinfo=UTC)) if t.volume]
    unique = {(t.symbol, t.ts, t.seq): t for t in ticks}  # identities are distinct, as the service passes them
    columns = TickColumns.of(list(unique.values()))

    bars = minute_bars_of(columns, columns.distinct_identities(np.arange(len(columns))))

    assert bars == minute_bars((t.symbol, t.ts, t.seq, t.price, t.volume) for t in unique.values())


def test_traded_value_beyond_int64_stays_exact() -> None:
    ts = datetime(2024, 1, 2, 1, 0, tzinfo=UTC)
    ticks = [Tick(symbol="005930", ts=ts, seq=i, price=4_000_000_000, volume=3_000_000_000) for i in range(2)]
    columns = TickColumns.of(ticks)

    (bar,) = minute_bars_of(columns, np.arange(2))

    assert bar.value == 2 * 4_000_000_000 * 3_000_000_000
