"""The KRX trading calendar: weekends plus a fixed table of exchange holidays (2024–2027).

KRX publishes its closures once a year; the table below holds the announced and the statutory
ones (substitute holidays, election days, the year-end closure on 31 December). Temporary
holidays decided later are added through configuration (``KrxCalendar(extra_holidays=…)``)
rather than by editing code. Outside the covered years only weekends are known, which
``covers`` makes visible instead of pretending.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta

from common.clock import kst_datetime, to_kst
from common.krx import SESSION_CLOSE, SESSION_OPEN

KRX_HOLIDAYS: frozenset[date] = frozenset(
    date.fromisoformat(day)
    for day in (
        # 2024
        "2024-01-01", "2024-02-09", "2024-02-12", "2024-03-01", "2024-04-10", "2024-05-01",
        "2024-05-06", "2024-05-15", "2024-06-06", "2024-08-15", "2024-09-16", "2024-09-17",
        "2024-09-18", "2024-10-01", "2024-10-03", "2024-10-09", "2024-12-25", "2024-12-31",
        # 2025
        "2025-01-01", "2025-01-27", "2025-01-28", "2025-01-29", "2025-01-30", "2025-03-03",
        "2025-05-01", "2025-05-05", "2025-05-06", "2025-06-03", "2025-06-06", "2025-08-15",
        "2025-10-03", "2025-10-06", "2025-10-07", "2025-10-08", "2025-10-09", "2025-12-25",
        "2025-12-31",
        # 2026
        "2026-01-01", "2026-02-16", "2026-02-17", "2026-02-18", "2026-03-02", "2026-05-01",
        "2026-05-05", "2026-05-25", "2026-06-03", "2026-08-17", "2026-09-24", "2026-09-25",
        "2026-10-05", "2026-10-09", "2026-12-25", "2026-12-31",
        # 2027
        "2027-01-01", "2027-02-08", "2027-02-09", "2027-03-01", "2027-05-05", "2027-05-13",
        "2027-08-16", "2027-09-14", "2027-09-15", "2027-09-16", "2027-10-04", "2027-10-11",
        "2027-12-27", "2027-12-31",
    )
)  # fmt: skip
COVERED_YEARS = range(2024, 2028)


class KrxCalendar:
    """Which KST days the exchange trades, and when its regular session opens and closes."""

    def __init__(self, extra_holidays: Iterable[date] = (), holidays: Iterable[date] | None = None) -> None:
        self.holidays = frozenset(KRX_HOLIDAYS if holidays is None else holidays) | frozenset(extra_holidays)

    def covers(self, day: date) -> bool:
        """Whether the holiday table knows ``day``'s year (outside it only weekends are skipped)."""
        return day.year in COVERED_YEARS

    def is_trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def trading_days(self, start: date, end: date) -> Iterator[date]:
        """Trading days from ``start`` to ``end`` inclusive."""
        day = start
        while day <= end:
            if self.is_trading_day(day):
                yield day
            day += timedelta(days=1)

    def next_trading_day(self, after: date) -> date:
        day = after + timedelta(days=1)
        while not self.is_trading_day(day):
            day += timedelta(days=1)
        return day

    def previous_trading_day(self, before: date) -> date:
        day = before - timedelta(days=1)
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
        return day

    def session_open(self, day: date) -> datetime:
        """09:00 KST of ``day`` in UTC."""
        return kst_datetime(day, SESSION_OPEN)

    def session_close(self, day: date) -> datetime:
        """15:30 KST of ``day`` in UTC."""
        return kst_datetime(day, SESSION_CLOSE)

    def in_session(self, instant: datetime) -> bool:
        local = to_kst(instant)
        return self.is_trading_day(local.date()) and SESSION_OPEN <= local.time() < SESSION_CLOSE
