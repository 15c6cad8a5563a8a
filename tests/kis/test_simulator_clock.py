"""``KIS_CLOCK=simulator``: a process of its own follows the simulator's replayed, accelerated time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.clock import AcceleratedClock
from common.errors import Operational
from common.kis.clock import KisClockSettings, follow_simulator_clock, market_clock_from_settings
from common.kis.sim import SimulatorSettings, serve_simulator

PORTS = {"real_rest_port": 0, "real_ws_port": 0, "paper_rest_port": 0, "paper_ws_port": 0}


async def test_followed_clock_agrees_with_the_simulators_accelerated_market_time() -> None:
    start = datetime(2018, 1, 10, 0, 0, tzinfo=UTC)
    market = AcceleratedClock(start, speed=60.0)
    async with serve_simulator(SimulatorSettings(**PORTS), market) as sim:
        followed = await follow_simulator_clock(sim.paper.rest_url, timeout=5)
        # Within a second of market time (loopback round trips are milliseconds; 60x speed).
        assert abs((followed.now() - market.now()).total_seconds()) < 1.0
        assert followed.now().year == 2018


async def test_system_clock_setting_follows_nothing() -> None:
    assert await market_clock_from_settings(KisClockSettings(clock="system")) is None


async def test_unreachable_simulator_is_an_operational_error_naming_the_setting() -> None:
    with pytest.raises(Operational, match="KIS_CLOCK=simulator"):
        await follow_simulator_clock("http://127.0.0.1:9", timeout=0.5)


def test_clock_settings_read_the_kis_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIS_CLOCK", "simulator")
    monkeypatch.setenv("KIS_DOMAIN", "real")
    monkeypatch.setenv("KIS_REAL_REST_URL", "http://127.0.0.1:9443/")
    settings = KisClockSettings()
    assert settings.clock == "simulator"
    assert settings.rest_url == "http://127.0.0.1:9443"
