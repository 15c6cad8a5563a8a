"""Validation rules: every rejected record has a reason; real-data oddities are flagged, not rejected."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

from data_processor import validation as v


def test_ohlc_inconsistent_bar_is_rejected_with_reason(dp: SimpleNamespace) -> None:
    bar = dp.daily(dp.DAY, 100, 99, 95, 98)  # open above high

    checked = v.check_bars([bar], {})

    assert checked.accepted == []
    assert [(r.reason, r.position) for r in checked.rejected] == [(v.OHLC_INCONSISTENT, 0)]
    assert "O=100 H=99" in checked.rejected[0].detail


def test_zero_price_and_zero_volume_with_range_are_rejected(dp: SimpleNamespace) -> None:
    bars = [dp.daily(dp.DAY, 0, 100, 0, 90), dp.daily(dp.DAY + timedelta(days=1), 100, 110, 95, 100, v=0)]

    reasons = sorted(r.reason for r in v.check_bars(bars, {}).rejected)

    assert reasons == [v.NON_POSITIVE_PRICE, v.ZERO_VOLUME_PRICE_MOVE]


def test_weekend_daily_bar_is_outside_session_but_old_saturdays_are_fine(dp: SimpleNamespace) -> None:
    sunday = dp.daily(date(2024, 1, 7), 100, 100, 100, 100)
    saturday_1998 = dp.daily(date(1998, 12, 5), 100, 100, 100, 100)

    checked = v.check_bars([sunday, saturday_1998], {})

    assert [r.reason for r in checked.rejected] == [v.OUTSIDE_SESSION]
    assert checked.accepted == [saturday_1998]


def test_daily_range_beyond_the_limit_band_is_rejected(dp: SimpleNamespace) -> None:
    previous = (dp.at(9, 0, day=date(2023, 12, 28)), 10_000, 5_000)
    wild = dp.daily(dp.DAY, 10_000, 15_000, 9_900, 14_000)  # +50% intraday from a 10,000 base

    checked = v.check_bars([wild], {(dp.SYMBOL, "1d"): previous})

    assert [r.reason for r in checked.rejected] == [v.OUTSIDE_PRICE_LIMITS]


def test_jump_after_corporate_action_is_flagged_not_rejected(dp: SimpleNamespace) -> None:
    # NAVER, 2013-08-29: relisted after a split at 460,000 against a last close of 291,504.
    previous = (dp.at(9, 0, day=date(2013, 7, 29)), 291_504, 0)
    relisted = dp.daily(date(2013, 8, 29), 460_000, 491_500, 431_000, 480_000, v=1_000)

    checked = v.check_bars([relisted], {(dp.SYMBOL, "1d"): previous})

    assert checked.accepted == [relisted]
    assert [f.flag for f in checked.flags] == [v.FLAG_CORPORATE_ACTION]
    assert checked.flags[0].detail["base"] == 291_504


def test_zero_volume_day_is_a_halt_flag(dp: SimpleNamespace) -> None:
    halted = dp.daily(dp.DAY, 100, 100, 100, 100, v=0)

    checked = v.check_bars([halted], {})

    assert checked.accepted == [halted]
    assert [f.flag for f in checked.flags] == [v.FLAG_HALT]


def test_misaligned_minute_bar_is_rejected(dp: SimpleNamespace) -> None:
    from common.contracts import Bar

    bar = Bar(symbol=dp.SYMBOL, timeframe="1m", ts=dp.at(9, 1, 30), open=1, high=1, low=1, close=1, volume=1)

    assert [r.reason for r in v.check_bars([bar], {}).rejected] == [v.MISALIGNED_TIMESTAMP]


def test_ticks_outside_session_with_zero_volume_or_beyond_limits_are_rejected(dp: SimpleNamespace) -> None:
    ticks = [
        dp.tick(dp.at(9, 0, 1), 70_000),
        dp.tick(dp.at(8, 59, 59), 70_000, seq=1),
        dp.tick(dp.at(15, 30, 0), 70_000, seq=2),  # closing auction print: inside
        dp.tick(dp.at(15, 30, 1), 70_000, seq=3),
        dp.tick(dp.at(10, 0), 70_000, volume=0, seq=4),
        dp.tick(dp.at(10, 0), 99_000, seq=5),  # +41% over a 70,000 close
    ]

    checked = v.check_ticks(ticks, lambda symbol, day: 70_000)

    assert [t.seq for t in checked.accepted] == [0, 2]
    assert [(r.position, r.reason) for r in checked.rejected] == [
        (1, v.OUTSIDE_SESSION),
        (3, v.OUTSIDE_SESSION),
        (4, v.NON_POSITIVE_VOLUME),
        (5, v.OUTSIDE_PRICE_LIMITS),
    ]


def test_same_tick_key_with_different_values_in_one_batch_is_rejected_but_exact_copy_is_kept(
    dp: SimpleNamespace,
) -> None:
    first = dp.tick(dp.at(9, 5), 70_000)
    conflict = dp.tick(dp.at(9, 5), 70_100)

    checked = v.check_ticks([first, first, conflict], lambda symbol, day: None)

    assert checked.accepted == [first, first]  # the exact copy is a duplicate the store ignores
    assert [r.reason for r in checked.rejected] == [v.DUPLICATE_IN_BATCH]


def test_gap_flags_mark_missing_minutes_and_long_daily_holes() -> None:
    base = datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    minute_series = [("005930", base), ("005930", base + timedelta(minutes=1)), ("005930", base + timedelta(minutes=4))]
    day_series = [("005930", base), ("005930", base + timedelta(days=3)), ("005930", base + timedelta(days=40))]

    minute_gaps = v.gap_flags("1m", minute_series)
    day_gaps = v.gap_flags("1d", day_series)

    assert [(f.ts, f.detail["missing"]) for f in minute_gaps] == [(base + timedelta(minutes=4), 2)]
    assert [f.ts for f in day_gaps] == [base + timedelta(days=40)]
