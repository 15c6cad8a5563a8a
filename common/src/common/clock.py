"""Injected time: live, fixed and accelerated clocks, and KST helpers.

Storage is UTC; the market runs on KST. Code never calls ``datetime.now()`` directly: it is
handed a ``Clock`` so that the simulator, tests and backtests can run at any speed.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")


class Clock(Protocol):
    """A source of the current instant (always timezone-aware UTC) and of waiting."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FixedClock:
    """A clock that moves only when told to; ``sleep`` advances it instantly."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = ensure_utc(instant)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta

    async def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=seconds))
        await asyncio.sleep(0)


class AcceleratedClock:
    """Time that starts at ``start`` and runs ``speed`` times faster than the wall clock."""

    def __init__(self, start: datetime, speed: float, base: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._base = base or SystemClock()
        self._origin_real = self._base.now()
        self._origin = ensure_utc(start)
        self.speed = speed

    def now(self) -> datetime:
        elapsed = self._base.now() - self._origin_real
        return self._origin + elapsed * self.speed

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds / self.speed)


def wall_seconds(clock: Clock, seconds: float) -> float:
    """How long ``seconds`` of ``clock``'s time last on the wall clock (an accelerated clock's pass faster)."""
    return seconds / clock.speed if isinstance(clock, AcceleratedClock) else seconds


def ensure_utc(instant: datetime) -> datetime:
    """The same instant in UTC; naive datetimes are refused rather than guessed."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()} has no time zone")
    return instant.astimezone(UTC)


def to_kst(instant: datetime) -> datetime:
    return ensure_utc(instant).astimezone(KST)


def kst_datetime(day: date, at: time) -> datetime:
    """A KST wall-clock time on ``day`` as an aware datetime in UTC."""
    return datetime.combine(day, at, tzinfo=KST).astimezone(UTC)


def kst_today(clock: Clock) -> date:
    return to_kst(clock.now()).date()
