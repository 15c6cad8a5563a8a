"""The trader runs on the broker's clock: the runner's ``kis_clock`` wins over the system clock."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import SecretStr

from common.clock import FixedClock
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from trader.app import market_clock


def test_followed_simulator_clock_is_the_traders_market_clock() -> None:
    runtime = Runtime.from_settings(
        RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr("sqlite+aiosqlite:///:memory:"))
    )
    assert market_clock(runtime) is runtime.clock
    replay = FixedClock(datetime(2018, 1, 10, 1, 0, tzinfo=UTC))
    runtime.extras["kis_clock"] = replay
    assert market_clock(runtime) is replay
