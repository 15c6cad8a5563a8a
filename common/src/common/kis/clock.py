"""The broker's clock for a service running in its own process (distributed mode).

A KIS simulator replaying past bars in accelerated time has its own "now": session hours,
trading days, order and fill times and token expiry are all in that time. All-in-one mode
hands the simulator's clock to the services in process (``runtime.extras["kis_clock"]``); a
separate process follows it with ``KIS_CLOCK=simulator``: at start it asks the simulator's
``/admin/health`` for its current instant and speed and runs an ``AcceleratedClock`` from
there. Against the real KIS (``KIS_CLOCK=system``, the default) the system clock is the
market's clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Literal

import httpx
import structlog
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.clock import AcceleratedClock, Clock
from common.errors import Operational
from common.kis.settings import PAPER_REST_URL, REAL_REST_URL, KisDomain
from common.settings import TradebotSettings

log = structlog.get_logger(__name__)


class KisClockSettings(TradebotSettings):
    """Which clock the KIS side runs on (``KIS_CLOCK``); no credentials, so any service may read it."""

    model_config = SettingsConfigDict(env_prefix="KIS_", extra="ignore", env_ignore_empty=True)

    clock: Literal["system", "simulator"] = "system"
    domain: KisDomain = KisDomain.PAPER
    real_rest_url: str = REAL_REST_URL
    paper_rest_url: str = PAPER_REST_URL
    clock_sync_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @property
    def rest_url(self) -> str:
        url = self.real_rest_url if self.domain is KisDomain.REAL else self.paper_rest_url
        return url.rstrip("/")


def _parse_health(body: object) -> tuple[datetime, float]:
    if not isinstance(body, dict) or not isinstance(body.get("now"), str):
        raise ValueError("no 'now' in the answer")
    now = datetime.fromisoformat(body["now"])
    if now.tzinfo is None:
        raise ValueError("'now' has no time zone")
    speed = body.get("speed")
    return now, float(speed) if isinstance(speed, int | float) and speed > 0 else 1.0


async def follow_simulator_clock(
    rest_url: str, *, timeout: float = 30.0, client: httpx.AsyncClient | None = None
) -> Clock:
    """An ``AcceleratedClock`` that matches the simulator at ``rest_url``; retries until ``timeout``.

    The error is at most half the round trip times the speed (milliseconds of market time on
    loopback). The simulator's speed does not change while it runs; a restarted simulator
    needs the services restarted too.
    """
    url = f"{rest_url.rstrip('/')}/admin/health"
    deadline = time.monotonic() + timeout
    owned = client is None
    http = client or httpx.AsyncClient(timeout=5.0)
    try:
        while True:
            try:
                sent = time.monotonic()
                response = await http.get(url)
                round_trip = time.monotonic() - sent
                response.raise_for_status()
                now, speed = _parse_health(response.json())
                break
            except (httpx.HTTPError, ValueError) as exc:
                if time.monotonic() >= deadline:
                    raise Operational(
                        f"KIS_CLOCK=simulator: the simulator at {rest_url} did not tell its time "
                        f"({type(exc).__name__}: {str(exc)[:120]})"
                    ) from exc
                await asyncio.sleep(0.5)
    finally:
        if owned:
            await http.aclose()
    # The answer left the simulator about half a round trip ago: that much market time has passed.
    clock = AcceleratedClock(now + timedelta(seconds=round_trip / 2 * speed), speed)
    log.info("kis.clock_following_simulator", url=rest_url, now=now.isoformat(), speed=speed)
    return clock


async def market_clock_from_settings(settings: KisClockSettings) -> Clock | None:
    """The broker's clock when it is not the system's (``KIS_CLOCK=simulator``), else None."""
    if settings.clock == "system":
        return None
    return await follow_simulator_clock(settings.rest_url, timeout=settings.clock_sync_timeout_seconds)
