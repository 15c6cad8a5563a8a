"""Tick → 1-minute → daily aggregation, independent of arrival order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from data_processor.aggregation import BarRow, daily_bars, day_is_closed, minute_bars, minute_is_closed

T0 = datetime(2024, 1, 2, 0, 0, tzinfo=UTC)  # 09:00 KST


def test_minute_bar_has_ohlcv_and_vwap_from_its_ticks() -> None:
    ticks = [
        ("005930", T0 + timedelta(seconds=1), 0, 100, 10),
        ("005930", T0 + timedelta(seconds=20), 0, 105, 5),
        ("005930", T0 + timedelta(seconds=20), 1, 95, 5),
        ("005930", T0 + timedelta(seconds=59), 0, 101, 20),
        ("005930", T0 + timedelta(seconds=60), 0, 200, 1),
    ]

    first, second = minute_bars(ticks)

    assert first == BarRow("005930", "1m", T0, 100, 105, 95, 101, 40, 100 * 10 + 105 * 5 + 95 * 5 + 101 * 20)
    assert first.vwap == (1000 + 525 + 475 + 2020) / 40
    assert second.ts == T0 + timedelta(minutes=1) and second.open == 200


def test_shuffled_ticks_give_the_same_bars() -> None:
    rng = random.Random(7)
    ticks = [
        ("005930", T0 + timedelta(seconds=s), s % 3, 100 + rng.randint(-5, 5), rng.randint(1, 9)) for s in range(600)
    ]
    shuffled = ticks[:]
    rng.shuffle(shuffled)

    assert minute_bars(shuffled) == minute_bars(ticks)


def test_daily_bar_from_minutes_spans_the_session() -> None:
    minutes = [
        BarRow("005930", "1m", T0, 100, 110, 99, 105, 10, 1_000),
        BarRow("005930", "1m", T0 + timedelta(minutes=1), 105, 120, 104, 118, 20, 2_300),
        BarRow("005930", "1m", T0 + timedelta(hours=6, minutes=30), 118, 118, 90, 91, 5, 460),
    ]

    (day,) = daily_bars(minutes)

    assert day == BarRow("005930", "1d", T0, 100, 120, 90, 91, 35, 3_760)


def test_minute_closes_on_a_later_print_or_at_the_closing_auction() -> None:
    assert not minute_is_closed(T0, T0 + timedelta(seconds=59))
    assert minute_is_closed(T0, T0 + timedelta(minutes=1))
    auction = T0 + timedelta(hours=6, minutes=30)  # 15:30 KST
    assert minute_is_closed(auction, auction)
    assert not day_is_closed(T0, auction - timedelta(seconds=1))
    assert day_is_closed(T0, auction)
