"""``tradebot-kis-sim``: run the KIS simulator until Ctrl-C (settings from ``KIS_SIM_*``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import structlog

from common.kis.sim.server import serve_simulator
from common.kis.sim.settings import SimulatorSettings

log = structlog.get_logger("common.kis.sim")


async def run(settings: SimulatorSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve_simulator(settings) as sim:
        for account in settings.accounts:
            # Credentials and account numbers stay out of logs (docs/kis_simulator.md lists the dev keys).
            log.info("kis_sim.account", domain=account.domain, hts_id=account.hts_id, cash=account.cash)
        log.info(
            "kis_sim.listening",
            real_rest=sim.real.rest_url,
            real_ws=sim.real.ws_url,
            paper_rest=sim.paper.rest_url,
            paper_ws=sim.paper.ws_url,
            admin=f"{sim.real.rest_url}/admin/faults",
        )
        await stop.wait()
    log.info("kis_sim.shutdown")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )
    asyncio.run(run(SimulatorSettings()))


if __name__ == "__main__":
    main()
