from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from common.clock import AcceleratedClock, FixedClock, ensure_utc, kst_datetime, kst_today, to_kst


async def test_fixed_clock_moves_only_when_told() -> None:
    clock = FixedClock(datetime(2024, 1, 2, 0, 0, tzinfo=UTC))
    assert clock.now() == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    await clock.sleep(90)
    assert clock.now() == datetime(2024, 1, 2, 0, 1, 30, tzinfo=UTC)


async def test_accelerated_clock_runs_faster_than_its_base() -> None:
    base = FixedClock(datetime(2024, 1, 2, tzinfo=UTC))
    clock = AcceleratedClock(datetime(2020, 5, 4, tzinfo=UTC), speed=60, base=base)
    base.advance(timedelta(seconds=2))
    assert clock.now() == datetime(2020, 5, 4, 0, 2, tzinfo=UTC)


def test_kst_helpers() -> None:
    assert kst_datetime(date(2024, 1, 2), time(9, 0)) == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    assert to_kst(datetime(2024, 1, 1, 15, 0, tzinfo=UTC)).date() == date(2024, 1, 2)
    assert kst_today(FixedClock(datetime(2024, 1, 1, 15, 0, tzinfo=UTC))) == date(2024, 1, 2)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ensure_utc(datetime(2024, 1, 2))
