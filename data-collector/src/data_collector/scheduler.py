"""Scheduled collection on the KRX calendar, run inside the service (no external cron).

On each trading day (KST): a pre-open backfill of the watchlist's recent daily bars (and, when
the scheduler is given ``quotes``, a quote per symbol published as ``market.quote.v1`` for its
fundamentals), then a stream of its trades and book through the session. Weekends and exchange holidays are skipped.
A service started late still does the day's work whose window is open: the backfill any time
that day, the stream until its stop time. Both requests are the same for the same day, so a
restart, or two replicas, reuse the day's jobs instead of starting them again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import structlog

from common.clock import Clock, kst_datetime, to_kst
from common.errors import TradebotError
from common.krx_calendar import KrxCalendar
from data_collector.schemas import BackfillRequest, StreamRequest
from data_collector.settings import DataCollectorSettings

log = structlog.get_logger(__name__)

Submit = Callable[[BackfillRequest | StreamRequest], Awaitable[object]]
PublishQuotes = Callable[[list[str]], Awaitable[object]]


@dataclass(frozen=True)
class Action:
    """One scheduled submission: due from ``at`` until ``until`` (UTC)."""

    name: str
    at: datetime
    until: datetime
    request: BackfillRequest | StreamRequest


class CollectionScheduler:
    """Turns the settings' daily plan into job submissions at the right KST times."""

    def __init__(
        self,
        settings: DataCollectorSettings,
        calendar: KrxCalendar,
        clock: Clock,
        submit: Submit,
        quotes: PublishQuotes | None = None,
    ) -> None:
        self.settings = settings
        self.calendar = calendar
        self.clock = clock
        self.submit = submit
        self.quotes = quotes

    def actions(self, day: date) -> list[Action]:
        """What is due on ``day``: nothing on weekends and holidays or without a watchlist."""
        settings = self.settings
        if not settings.watchlist or not self.calendar.is_trading_day(day):
            return []
        next_midnight = kst_datetime(day + timedelta(days=1), time(0, 0))
        backfill = BackfillRequest(
            kind="backfill",
            symbols=settings.watchlist,
            start=day - timedelta(days=settings.preopen_backfill_days),
            end=self.calendar.previous_trading_day(day),
            timeframes=["1d"],
        )
        stream_stop = kst_datetime(day, settings.stream_stop_at)
        stream = StreamRequest(
            kind="stream",
            symbols=settings.watchlist[:41],
            channels=settings.stream_channels,
            until=stream_stop,
        )
        return [
            Action("preopen_backfill", kst_datetime(day, settings.preopen_backfill_at), next_midnight, backfill),
            Action("session_stream", kst_datetime(day, settings.stream_start_at), stream_stop, stream),
        ]

    async def run(self, stop_at: datetime | None = None) -> None:
        """Submit each action when due, day after day, until cancelled (or ``stop_at``, for tests)."""
        if not self.settings.watchlist:
            log.warning("data_collector.schedule_idle", reason="DATA_COLLECTOR_WATCHLIST is empty")
            return
        day = to_kst(self.clock.now()).date()
        while stop_at is None or self.clock.now() < stop_at:
            if not self.calendar.covers(day):
                log.warning("data_collector.calendar_not_covered", day=day.isoformat())
            actions = self.actions(day)
            if not actions:
                log.info(
                    "data_collector.schedule_skipped",
                    day=day.isoformat(),
                    reason="weekend" if day.weekday() >= 5 else "holiday",
                )
            for action in actions:
                wait = (action.at - self.clock.now()).total_seconds()
                if wait > 0:
                    if stop_at is not None and action.at >= stop_at:
                        return
                    await self.clock.sleep(wait)
                if self.clock.now() < action.until:
                    await self._fire(day, action)
            day += timedelta(days=1)
            wait = (kst_datetime(day, time(0, 0)) - self.clock.now()).total_seconds()
            if wait > 0:
                if stop_at is not None and kst_datetime(day, time(0, 0)) >= stop_at:
                    return
                await self.clock.sleep(wait)

    async def _fire(self, day: date, action: Action) -> None:
        try:
            await self.submit(action.request)
            log.info("data_collector.schedule_fired", day=day.isoformat(), action=action.name)
            if isinstance(action.request, BackfillRequest) and self.quotes is not None:
                await self.quotes(list(action.request.symbols))
        except TradebotError as exc:
            # A refused submission (e.g. a manual stream holding the session) must not stop the schedule.
            log.warning(
                "data_collector.schedule_refused", day=day.isoformat(), action=action.name, error=exc.code,
                message=exc.message,
            )  # fmt: skip
