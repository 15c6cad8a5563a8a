"""The trader service: ``create_app(runtime)`` and its console script."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from common.clock import Clock
from common.errors import Unavailable
from common.kis import KisClient, KisSettings
from common.runtime import Runtime
from common.service import ServiceSpec, build_app, load_settings, run_service
from trader.broker import Broker, KisBroker
from trader.notifications import Notifier
from trader.routes import dashboard_router, router
from trader.service import TraderService
from trader.settings import TraderSettings

DESCRIPTION = "Order management, positions and P&L, risk engine, kill switch."


def market_clock(runtime: Runtime) -> Clock:
    """The broker's time: the runner's (``kis_clock``: a simulator's, in process or followed with
    ``KIS_CLOCK=simulator``), else the runtime's clock."""
    provided: Clock | None = runtime.extras.get("kis_clock")
    if provided is not None:
        return provided
    simulator: Any = runtime.extras.get("kis_simulator")
    clock: Clock = simulator.clock if simulator is not None else runtime.clock
    return clock


def default_broker(runtime: Runtime, clock: Clock) -> Broker | None:
    """The KIS account of this deployment: the runner's (all-in-one) or ``KIS_*``; None without credentials."""
    kis: KisSettings | None = runtime.extras.get("kis")
    if kis is None:
        kis = load_settings(KisSettings)
    assert kis is not None
    if not kis.appkey.get_secret_value() or not kis.cano.get_secret_value():
        return None
    return KisBroker(KisClient.from_settings(kis, engine=runtime.engine, clock=clock))


def create_app(
    runtime: Runtime,
    *,
    settings: TraderSettings | None = None,
    broker: Broker | None = None,
    clock: Clock | None = None,
    lease_clock: Clock | None = None,
) -> FastAPI:
    settings = settings or load_settings(TraderSettings)
    assert settings is not None
    clock = clock or market_clock(runtime)
    broker = broker if broker is not None else default_broker(runtime, clock)
    notifier = Notifier(settings.notifications, runtime.sessionmaker, clock)
    trader = TraderService(
        settings=settings,
        sessionmaker=runtime.sessionmaker,
        bus=runtime.bus,
        clock=clock,
        broker=broker,
        notifier=notifier,
        lease_clock=lease_clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await trader.start()
        try:
            yield
        finally:
            await trader.stop()

    async def lease_check() -> None:
        # A passive replica is alive but not ready: traffic should go to the active one.
        if not trader.active:
            raise Unavailable("passive replica (another instance holds the account lease)")

    app = build_app(
        "trader",
        runtime,
        title="trading-bot trader",
        description=DESCRIPTION,
        routers=[router, dashboard_router],
        lifespan=lifespan,
        readiness={"lease": lease_check},
    )
    app.state.trader = trader
    return app


service = ServiceSpec(name="trader", port=8005, create_app=create_app, settings=TraderSettings, description=DESCRIPTION)


def main() -> None:
    run_service(service)
