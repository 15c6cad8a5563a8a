"""Fixtures of the data-processor tests: a migrated database, the app, and direct handlers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.bus import Handler
from common.clock import FixedClock, kst_datetime
from common.contracts import Bar, Envelope, MarketBarV1, MarketTickBatchV1, Tick
from common.db import migrate
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from data_processor.app import create_app
from data_processor.consumers import bar_handler, quote_handler, tick_handler
from data_processor.settings import DataProcessorSettings

SYMBOL = "005930"
DAY = date(2024, 1, 2)  # a Tuesday


def at(hour: int, minute: int, second: int = 0, day: date = DAY) -> datetime:
    """A KST wall-clock instant as aware UTC."""
    return kst_datetime(day, time(hour, minute, second))


def tick(ts: datetime, price: int, volume: int = 10, seq: int = 0, symbol: str = SYMBOL) -> Tick:
    return Tick(symbol=symbol, ts=ts, seq=seq, price=price, volume=volume)


def daily(day: date, o: int, h: int, lo: int, c: int, v: int = 1_000, symbol: str = SYMBOL) -> Bar:
    return Bar(symbol=symbol, timeframe="1d", ts=at(9, 0, day=day), open=o, high=h, low=lo, close=c, volume=v)


def tick_envelope(ticks: Sequence[Tick], message_id: uuid.UUID | None = None) -> Envelope:
    return Envelope(
        message_id=message_id or uuid.uuid4(), producer="test", payload=MarketTickBatchV1(ticks=list(ticks))
    )


def bar_envelope(bars: Sequence[Bar], message_id: uuid.UUID | None = None) -> Envelope:
    return Envelope(message_id=message_id or uuid.uuid4(), producer="test", payload=MarketBarV1(bars=list(bars)))


@dataclass
class Env:
    runtime: Runtime
    client: httpx.AsyncClient
    ticks: Handler
    bars: Handler
    quotes: Handler
    published: list[Envelope] = field(default_factory=list)

    async def count(self, model: type, *where: object) -> int:
        async with self.runtime.sessionmaker() as session:
            statement = select(func.count()).select_from(model)
            for condition in where:
                statement = statement.where(condition)  # type: ignore[arg-type]
            return int((await session.execute(statement)).scalar_one())

    def session(self) -> AsyncSession:
        return self.runtime.sessionmaker()


async def open_env(database_url: str) -> AsyncIterator[Env]:
    await migrate(database_url)
    settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=database_url, migrate_on_start=False)  # type: ignore[arg-type]
    runtime = Runtime.from_settings(settings, clock=FixedClock(datetime(2024, 6, 1, tzinfo=UTC)))
    service_settings = DataProcessorSettings(consume=False)
    async with runtime:
        published: list[Envelope] = []

        async def capture(envelope: Envelope) -> None:
            published.append(envelope)

        await runtime.bus.subscribe("test.features", ["features.#"], capture)
        app = create_app(runtime, service_settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://dp") as client:
                processor = app.state.processor
                env = Env(
                    runtime=runtime,
                    client=client,
                    ticks=tick_handler(runtime, processor, service_settings),
                    bars=bar_handler(runtime, processor, service_settings),
                    quotes=quote_handler(runtime, processor, service_settings),
                    published=published,
                )
                env.app = app  # type: ignore[attr-defined]
                yield env


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Env]:
    async for value in open_env(database_url):
        yield value


@pytest.fixture
async def sqlite_env(sqlite_url: str) -> AsyncIterator[Env]:
    async for value in open_env(sqlite_url):
        yield value


@pytest.fixture
async def pg_env(pg_url: str) -> AsyncIterator[Env]:
    async for value in open_env(pg_url):
        yield value


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def synthetic_daily(n: int, seed: int = 3, scale: int = 1) -> list[Bar]:
    """``n`` daily bars of a random walk on weekdays from 2020 (prices times ``scale``)."""
    rng = np.random.default_rng(seed)
    bars, close, day = [], 50_000 * scale, date(2020, 1, 1)
    while len(bars) < n:
        day += timedelta(days=1)
        if day.weekday() >= 5:
            continue
        o = close
        c = max(1_000, int(o * (1 + rng.normal(0, 0.02))))
        h, lo = max(o, c) + int(rng.integers(0, 500)) * scale, min(o, c) - int(rng.integers(0, 500)) * scale
        bars.append(daily(day, o, h, lo, c, v=int(rng.integers(1_000, 100_000))))
        close = c
    return bars


@pytest.fixture
def dp() -> SimpleNamespace:
    """The helpers above, for test modules (importlib mode cannot import a conftest)."""
    return SimpleNamespace(
        SYMBOL=SYMBOL,
        DAY=DAY,
        at=at,
        tick=tick,
        daily=daily,
        tick_envelope=tick_envelope,
        bar_envelope=bar_envelope,
        minutes=minutes,
        synthetic_daily=synthetic_daily,
    )
