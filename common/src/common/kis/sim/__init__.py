"""KIS simulator: a local server that speaks the Korea Investment & Securities Open API protocol.

REST and WebSocket on both domains (real and paper), accounts and order matching with KRX rules,
a replayed or synthetic market in accelerated time, and faults on demand. See docs/kis_simulator.md.

    async with serve_simulator(SimulatorSettings(real_rest_port=0, ...)) as sim:
        sim.real.rest_url, sim.paper.ws_url, sim.exchange
"""

from common.kis.sim.faults import FaultSpec
from common.kis.sim.server import Endpoints, RunningSimulator, serve_simulator
from common.kis.sim.settings import SimAccount, SimulatorSettings, dev_account, in_process_settings

__all__ = [
    "Endpoints",
    "FaultSpec",
    "RunningSimulator",
    "SimAccount",
    "SimulatorSettings",
    "dev_account",
    "in_process_settings",
    "serve_simulator",
]
