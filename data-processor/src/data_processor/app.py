"""The data-processor service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI

from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from data_processor.consumers import start_consumers
from data_processor.routes import router
from data_processor.service import JobRunner, Processor
from data_processor.settings import DataProcessorSettings

DESCRIPTION = "Validation, cleaning, aggregation, indicators and regimes; writes ticks, bars and features."


def create_app(runtime: Runtime, settings: DataProcessorSettings | None = None) -> FastAPI:
    settings = settings or load_settings(DataProcessorSettings)
    processor = Processor(runtime.clock, settings.feature_sets)
    jobs = JobRunner(processor, runtime.sessionmaker, runtime.clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await jobs.recover()
        if settings.consume:
            await start_consumers(runtime, processor, settings)
        try:
            yield
        finally:
            await jobs.close()

    app = build_app(
        "data-processor",
        runtime,
        title="trading-bot data-processor",
        description=DESCRIPTION,
        routers=[router],
        lifespan=lifespan,
    )
    app.state.processor = processor
    app.state.jobs = jobs
    app.state.settings = settings
    return app


service = ServiceSpec(
    name="data-processor", port=8002, create_app=create_app, settings=DataProcessorSettings, description=DESCRIPTION
)


def tune_gc() -> None:
    """Keep the collector off the ingest path (distributed mode: the process is this service alone).

    Parsing a 5,000-tick message allocates tens of thousands of objects; with the default
    thresholds that triggers repeated full collections over every long-lived object, which
    measured as half of the envelope parsing time. Objects alive at start-up are frozen (never
    scanned again) and collections of young objects run less often. Reference cycles are still
    collected; memory is not held longer than a few batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def main() -> None:
    tune_gc()
    run_service(service)
