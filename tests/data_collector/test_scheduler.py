"""The collector's own scheduler on the KRX calendar, driven by a fixed clock."""

from __future__ import annotations

from datetime import date, datetime, time

from common.clock import KST, FixedClock, to_kst
from common.krx_calendar import KrxCalendar
from data_collector.scheduler import CollectionScheduler
from data_collector.schemas import BackfillRequest, StreamRequest
from data_collector.settings import DataCollectorSettings


def scheduler_from(start: datetime, **settings: object) -> tuple[CollectionScheduler, list[tuple[datetime, object]]]:
    clock = FixedClock(start)
    submitted: list[tuple[datetime, object]] = []

    async def submit(request: BackfillRequest | StreamRequest) -> object:
        submitted.append((clock.now(), request))
        return None

    config = DataCollectorSettings(watchlist=["005930", "000660"], **settings)  # type: ignore[arg-type]
    return CollectionScheduler(config, KrxCalendar(config.extra_holidays), clock, submit), submitted


async def test_scheduler_runs_only_on_trading_days_skipping_weekends_and_holidays() -> None:
    # Thursday 2 October 2025 to Monday 13 October: Chuseok and National Foundation Day close
    # 3 and 6–9 October, with a weekend on each side.
    scheduler, submitted = scheduler_from(datetime(2025, 10, 2, 7, 0, tzinfo=KST))
    await scheduler.run(stop_at=datetime(2025, 10, 13, 0, 0, tzinfo=KST))

    days = sorted({to_kst(at).date() for at, _ in submitted})
    assert days == [date(2025, 10, 2), date(2025, 10, 10)]
    friday = [(to_kst(at).time(), r) for at, r in submitted if to_kst(at).date() == date(2025, 10, 10)]
    (backfill_at, backfill), (stream_at, stream) = friday
    assert backfill_at == time(8, 0) and isinstance(backfill, BackfillRequest)
    assert backfill.end == date(2025, 10, 2)  # the previous trading day, across the holidays
    assert stream_at == time(8, 59) and isinstance(stream, StreamRequest)
    assert stream.until == datetime(2025, 10, 10, 15, 31, tzinfo=KST)
    assert stream.symbols == ["000660", "005930"]


async def test_a_late_start_still_streams_the_open_session_but_a_closed_one_is_left_alone() -> None:
    scheduler, submitted = scheduler_from(datetime(2025, 10, 2, 11, 0, tzinfo=KST))
    await scheduler.run(stop_at=datetime(2025, 10, 2, 23, 0, tzinfo=KST))
    assert [type(r).__name__ for _, r in submitted] == ["BackfillRequest", "StreamRequest"]
    assert all(to_kst(at).time() == time(11, 0) for at, _ in submitted)

    scheduler, submitted = scheduler_from(datetime(2025, 10, 2, 16, 0, tzinfo=KST))
    await scheduler.run(stop_at=datetime(2025, 10, 2, 23, 0, tzinfo=KST))
    assert [type(r).__name__ for _, r in submitted] == ["BackfillRequest"]


async def test_configured_extra_holidays_are_skipped_too() -> None:
    scheduler, submitted = scheduler_from(datetime(2025, 10, 2, 7, 0, tzinfo=KST), extra_holidays=[date(2025, 10, 2)])
    await scheduler.run(stop_at=datetime(2025, 10, 3, 0, 0, tzinfo=KST))
    assert submitted == []


def test_the_calendar_knows_weekends_holidays_and_its_covered_years() -> None:
    calendar = KrxCalendar()
    assert calendar.is_trading_day(date(2026, 2, 13))
    assert not calendar.is_trading_day(date(2026, 2, 16))  # Seollal
    assert not calendar.is_trading_day(date(2026, 2, 14))  # Saturday
    assert calendar.next_trading_day(date(2026, 2, 13)) == date(2026, 2, 19)
    assert calendar.covers(date(2027, 12, 31)) and not calendar.covers(date(2017, 1, 2))
    assert calendar.in_session(datetime(2026, 2, 13, 9, 0, tzinfo=KST))
    assert not calendar.in_session(datetime(2026, 2, 13, 15, 30, tzinfo=KST))


async def test_the_scheduler_is_off_unless_enabled() -> None:
    assert DataCollectorSettings().schedule_enabled is False


async def test_the_preopen_backfill_also_publishes_the_watchlists_quotes() -> None:
    clock = FixedClock(datetime(2025, 10, 2, 7, 0, tzinfo=KST))
    fetched: list[tuple[datetime, list[str]]] = []

    async def submit(request: BackfillRequest | StreamRequest) -> object:
        return None

    async def quotes(symbols: list[str]) -> object:
        fetched.append((clock.now(), symbols))
        return len(symbols)

    config = DataCollectorSettings(watchlist=["005930", "000660"])  # type: ignore[arg-type]
    scheduler = CollectionScheduler(config, KrxCalendar(config.extra_holidays), clock, submit, quotes)
    await scheduler.run(stop_at=datetime(2025, 10, 2, 23, 0, tzinfo=KST))

    assert [(to_kst(at).time(), symbols) for at, symbols in fetched] == [(time(8, 0), ["000660", "005930"])]
