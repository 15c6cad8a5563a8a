"""Where the collector's KIS client comes from.

All-in-one mode puts the simulator's ``KisSettings`` in ``runtime.extras``: ``"kis_market_data"``
(an app key of its own: KIS allows one WebSocket session per key, and the trader's fill notices
hold the trading account's), else ``"kis"``. Otherwise the ``KIS_*`` environment is read, and only
when a job first needs the broker (a collector that never collects needs no credentials). The
client runs on the broker's clock: token expiry times are the broker's, and the simulator's market
may run in accelerated or past time.
"""

from __future__ import annotations

import asyncio

import structlog

from common.clock import Clock
from common.errors import Unavailable
from common.kis import KisClient, KisSettings
from common.runtime import Runtime
from common.service import load_settings

log = structlog.get_logger(__name__)


class KisAccess:
    """One lazily created ``KisClient`` shared by every job of the service (one rate limit)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._client: KisClient | None = None
        self._lock = asyncio.Lock()

    def settings(self) -> KisSettings:
        provided = self._runtime.extras.get("kis_market_data") or self._runtime.extras.get("kis")
        if isinstance(provided, KisSettings):
            return provided
        settings: KisSettings = load_settings(KisSettings)
        return settings

    @property
    def clock(self) -> Clock:
        extras = self._runtime.extras
        clock = extras.get("kis_clock") or getattr(extras.get("kis_simulator"), "clock", None)
        return clock if clock is not None else self._runtime.clock

    def require_credentials(self) -> None:
        """Raise ``Unavailable`` (503) when no appkey/appsecret is configured."""
        settings = self.settings()
        if not settings.appkey.get_secret_value() or not settings.appsecret.get_secret_value():
            raise Unavailable("KIS credentials are not configured: set KIS_APPKEY and KIS_APPSECRET")

    async def client(self) -> KisClient:
        async with self._lock:
            if self._client is None:
                self.require_credentials()
                settings = self.settings()
                self._client = KisClient.from_settings(settings, engine=self._runtime.engine, clock=self.clock)
                log.info(
                    "data_collector.kis_client_ready",
                    domain=settings.domain.value,
                    rest_url=settings.rest_url,
                    rate_per_second=settings.effective_rate_per_second,
                )
            return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
