"""Fixtures for the data collector: a KIS simulator on loopback ports, the collector app wired as
all-in-one mode wires it (the runtime on the system clock, the simulator's market clock in
``extras["kis_clock"]``), and a small bar consumer that writes ``bars`` the way a
real consumer must (inbox + insert-or-ignore) so that "every bar exactly once" can be counted.
"""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import KST
from common.contracts import Envelope, MarketBarV1, MarketTickBatchV1
from common.db import BarRecord, idempotent, insert_ignoring_duplicates
from common.kis import KisSettings
from common.kis.sim import RunningSimulator, SimulatorSettings, in_process_settings, serve_simulator
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from data_collector.app import create_app
from data_collector.jobs import JobManager
from data_collector.settings import DataCollectorSettings

# Friday 19 January 2018, after the close: every replayed symbol has its bar of the day.
AFTER_CLOSE = datetime(2018, 1, 19, 16, 0, tzinfo=KST)
# The same day in the session, for streaming.
IN_SESSION = datetime(2018, 1, 19, 10, 0, tzinfo=KST)


def sim_settings(data_dir: Path | None, start: datetime, **overrides: Any) -> SimulatorSettings:
    # The collector talks to the paper domain; the real domain keeps its default limit.
    defaults: dict[str, Any] = {"data_dir": data_dir, "start": start, "speed": 1.0, "real_rest_per_second": 18.0}
    return in_process_settings(**{**defaults, **overrides})


def kis_settings(sim: RunningSimulator, tmp_path: Path, **overrides: Any) -> KisSettings:
    account = next(a for a in sim.settings.accounts if a.domain == "paper")
    values: dict[str, Any] = {
        "domain": "paper",
        "real_rest_url": sim.real.rest_url,
        "real_ws_url": sim.real.ws_url,
        "paper_rest_url": sim.paper.rest_url,
        "paper_ws_url": sim.paper.ws_url,
        "appkey": SecretStr(account.appkey),
        "appsecret": account.appsecret,
        "cano": SecretStr(account.cano),
        "acnt_prdt_cd": SecretStr(account.acnt_prdt_cd),
        "hts_id": SecretStr(account.hts_id),
        "token_cache_path": tmp_path / "kis-tokens.json",
        "rate_per_second": 200.0,
        "ws_reconnect_initial_seconds": 0.1,
        "ws_reconnect_max_seconds": 0.5,
    }
    values.update(overrides)
    return KisSettings(**values)


def _csv_rows(directory: Path, symbol: str, start: date, end: date) -> int:
    """Daily rows of ``symbol`` in ``[start, end]`` the replay serves (it skips non-positive prices)."""
    with (directory / f"{symbol}.csv").open(newline="") as handle:
        return sum(
            1
            for row in csv.DictReader(handle)
            if start <= date.fromisoformat(row["date"]) <= end
            and min(int(float(row[k])) for k in ("open", "high", "low", "close")) > 0
        )


@pytest.fixture
def csv_rows() -> Callable[[Path, str, date, date], int]:
    return _csv_rows


@dataclass
class BarSink:
    """A consumer of ``bar.#``: inbox + insert-or-ignore into ``bars``, counting what it applied."""

    runtime: Runtime
    applied: int = 0  # bars in messages the inbox let through
    inserted: int = 0  # rows really inserted
    ticks: int = 0
    tick_messages: list[Envelope] = field(default_factory=list)

    async def start(self, queue: str) -> None:
        async def write(session: AsyncSession, envelope: Envelope) -> None:
            assert isinstance(envelope.payload, MarketBarV1)
            rows = [bar.model_dump(exclude={"kind"}) for bar in envelope.payload.bars]
            statement = insert_ignoring_duplicates(BarRecord, session.get_bind().dialect.name).values(rows)
            result = await session.execute(statement)
            self.applied += len(rows)
            self.inserted += result.rowcount if isinstance(result, CursorResult) else 0

        async def count_ticks(envelope: Envelope) -> None:
            assert isinstance(envelope.payload, MarketTickBatchV1)
            self.ticks += len(envelope.payload.ticks)
            self.tick_messages.append(envelope)

        handler = idempotent(queue, self.runtime.sessionmaker, write, clock=self.runtime.clock)
        await self.runtime.bus.subscribe(queue, ["bar.#"], handler)
        await self.runtime.bus.subscribe(f"{queue}-ticks", ["tick.#"], count_ticks)

    async def rows(self, symbol: str | None = None) -> int:
        async with self.runtime.sessionmaker() as session:
            query = select(func.count()).select_from(BarRecord)
            if symbol is not None:
                query = query.where(BarRecord.symbol == symbol)
            return int((await session.execute(query)).scalar_one())


@dataclass
class Collector:
    """The collector app on a runtime, with an HTTP client and its job manager."""

    app: FastAPI
    http: httpx.AsyncClient

    @property
    def jobs(self) -> JobManager:
        manager: JobManager = self.app.state.jobs
        return manager

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/data/collect/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_for(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                job = await self.job(job_id)
                if done(job):
                    return job
                await asyncio.sleep(0.05)


@dataclass
class Harness:
    sim: RunningSimulator
    runtime: Runtime
    sink: BarSink
    open_collector: Callable[..., AbstractAsyncContextManager[Collector]]


HarnessFactory = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def harness(tmp_path: Path) -> HarnessFactory:
    """``async with harness(database_url, data_dir, start, **sim_overrides) as h``."""

    @asynccontextmanager
    async def build(
        database_url: str, data_dir: Path | None, start: datetime, kis: dict[str, Any] | None = None, **sim: Any
    ) -> AsyncIterator[Harness]:
        async with serve_simulator(sim_settings(data_dir, start, **sim)) as running:
            settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr(database_url))
            async with Runtime.from_settings(settings) as runtime:
                runtime.extras["kis"] = kis_settings(running, tmp_path, **(kis or {}))
                runtime.extras["kis_clock"] = running.clock
                sink = BarSink(runtime)
                await sink.start(f"test-bars-{uuid.uuid4().hex[:8]}")

                @asynccontextmanager
                async def open_collector(**overrides: Any) -> AsyncIterator[Collector]:
                    app = create_app(runtime, DataCollectorSettings(**overrides))
                    async with app.router.lifespan_context(app):
                        transport = httpx.ASGITransport(app=app)
                        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
                            yield Collector(app, http)

                yield Harness(running, runtime, sink, open_collector)

    return build


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 — polling an outcome, not waiting for a signal
            await asyncio.sleep(0.05)


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    return eventually
