"""The process-wide resources a service runs on: settings, clock, database, bus.

In distributed mode each service process builds its own ``Runtime`` from environment
variables; in all-in-one mode one ``Runtime`` (SQLite, in-process bus) is shared by every
service mounted in the process. Whoever creates a runtime opens and closes it
(``async with runtime:``); services only use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.bus import MessageBus, create_bus
from common.clock import Clock, SystemClock
from common.db import create_engine, create_sessionmaker, migrate
from common.errors import Operational
from common.settings import Mode, RuntimeSettings

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    settings: RuntimeSettings
    clock: Clock
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    bus: MessageBus
    # Facts the composition root wants services to know (e.g. the simulator's URLs).
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    @classmethod
    def from_settings(cls, settings: RuntimeSettings, clock: Clock | None = None, name: str = "tradebot") -> Runtime:
        if settings.mode is Mode.DISTRIBUTED and settings.amqp_url is None:
            raise Operational(
                "TRADEBOT_AMQP_URL is required in distributed mode (the in-process bus spans one process)"
            )
        engine = create_engine(settings.database_url.get_secret_value())
        return cls(
            settings=settings,
            clock=clock or SystemClock(),
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            bus=create_bus(settings, name),
        )

    async def __aenter__(self) -> Self:
        if self.settings.migrate_on_start:
            await migrate(self.settings.database_url.get_secret_value())
        await self.bus.start()
        log.info("runtime.started", mode=self.mode.value)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Bus first: handlers in flight still need the database while they drain.
        try:
            await self.bus.close()
        finally:
            await self.engine.dispose()
        log.info("runtime.stopped", mode=self.mode.value)
