"""The data-collector service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI

from common.krx_calendar import KrxCalendar
from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from data_collector.jobs import JobManager
from data_collector.kis import KisAccess
from data_collector.routes import build_router
from data_collector.scheduler import CollectionScheduler
from data_collector.service import CollectorService
from data_collector.settings import DataCollectorSettings

log = structlog.get_logger(__name__)

DESCRIPTION = "KIS REST backfill and WebSocket streams, published to the bus."
SCHEDULER_STOP_TIMEOUT_SECONDS = 5.0


def create_app(runtime: Runtime, settings: DataCollectorSettings | None = None) -> FastAPI:
    settings = settings or load_settings(DataCollectorSettings)
    calendar = KrxCalendar(extra_holidays=settings.extra_holidays)
    kis = KisAccess(runtime)
    manager = JobManager(runtime, settings, kis, calendar)
    collector = CollectorService(manager)
    # Session times are the market's: the scheduler runs on the broker's clock, as the jobs do.
    scheduler = CollectionScheduler(settings, calendar, manager.clock, manager.submit, collector.publish_quotes)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.recover()
        schedule: asyncio.Task[None] | None = None
        if settings.schedule_enabled:
            schedule = asyncio.create_task(scheduler.run(), name="data-collector-scheduler")
            log.info("data_collector.schedule_started", watchlist=settings.watchlist)
        try:
            yield
        finally:
            if schedule is not None:
                schedule.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(schedule, SCHEDULER_STOP_TIMEOUT_SECONDS)
            await manager.close()
            await kis.aclose()

    app = build_app(
        "data-collector",
        runtime,
        title="trading-bot data-collector",
        description=DESCRIPTION,
        routers=[build_router()],
        lifespan=lifespan,
    )
    app.state.collector = collector
    app.state.jobs = manager
    return app


service = ServiceSpec(
    name="data-collector", port=8001, create_app=create_app, settings=DataCollectorSettings, description=DESCRIPTION
)


def main() -> None:
    run_service(service)
