"""Start and stop the whole simulator: REST and WebSocket listeners of both domains, and the pump."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime

import structlog
import uvicorn
from websockets.asyncio.server import Server, ServerConnection, serve

from common.clock import AcceleratedClock, Clock, SystemClock
from common.kis.sim.exchange import Exchange
from common.kis.sim.market import Market, build_market
from common.kis.sim.rest import create_rest_app
from common.kis.sim.settings import Domain, SimulatorSettings
from common.kis.sim.state import SimState
from common.kis.sim.ws import WebSocketHub

log = structlog.get_logger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where one domain listens."""

    rest_url: str
    ws_url: str


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """What ``serve_simulator`` yields: URLs of both domains and in-process access for assertions."""

    real: Endpoints
    paper: Endpoints
    state: SimState
    hub: WebSocketHub

    @property
    def exchange(self) -> Exchange:
        return self.state.exchange

    @property
    def market(self) -> Market:
        return self.state.market

    @property
    def clock(self) -> Clock:
        return self.state.clock

    @property
    def settings(self) -> SimulatorSettings:
        return self.state.settings

    def endpoints(self, domain: Domain) -> Endpoints:
        return self.real if domain == "real" else self.paper


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (several run in one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says it is TCP; without it every answer waited ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def simulated_clock(settings: SimulatorSettings, market: Market) -> Clock:
    """The market's clock: the present at ``speed`` 1, else accelerated from ``start`` (or the data's start)."""
    start: datetime | None = settings.start or market.source.default_start()
    if start is None and settings.speed == 1.0:
        return SystemClock()
    return AcceleratedClock(start or SystemClock().now(), settings.speed)


async def _pump(state: SimState, hub: WebSocketHub) -> None:
    """Match orders and publish market data as simulated time moves on."""
    while True:
        try:
            state.exchange.advance_to(state.clock.now())
            hub.publish_market()
        except Exception:
            # One bad pass must not stop the market; the traceback goes to the log.
            log.exception("kis_sim.pump.failed")
        await state.wall.sleep(state.settings.pump_interval_seconds)


@contextlib.asynccontextmanager
async def serve_simulator(
    settings: SimulatorSettings, clock: Clock | None = None, *, wall_clock: Clock | None = None
) -> AsyncIterator[RunningSimulator]:
    """Run the simulator inside the current event loop until the block exits.

    ``clock`` is simulated market time (default: see ``simulated_clock``); ``wall_clock`` paces
    rate limits, keep-alives and the pump and must move by itself (default: the system clock).
    """
    market = build_market(settings.data_dir, settings.seed, settings.tick_seconds)
    state = SimState.build(settings, clock or simulated_clock(settings, market), wall_clock or SystemClock(), market)
    hub = WebSocketHub(state)

    rest_servers: list[tuple[_EmbeddedServer, asyncio.Task[None]]] = []
    ws_servers: list[Server] = []
    endpoints: dict[Domain, Endpoints] = {}
    pump: asyncio.Task[None] | None = None
    try:
        listeners: tuple[tuple[Domain, int, int], ...] = (
            ("real", settings.real_rest_port, settings.real_ws_port),
            ("paper", settings.paper_rest_port, settings.paper_ws_port),
        )
        for domain, rest_port, ws_port in listeners:
            sock = _bind(settings.host, rest_port)
            config = uvicorn.Config(
                create_rest_app(state, hub, domain), log_level="warning", access_log=False, lifespan="off"
            )
            server = _EmbeddedServer(config)
            task = asyncio.create_task(server.serve(sockets=[sock]), name=f"kis-sim-rest-{domain}")
            rest_servers.append((server, task))
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            rest_bound = sock.getsockname()[1]

            async def handler(connection: ServerConnection, _domain: Domain = domain) -> None:
                await hub.handle(connection, _domain)

            ws_server = await serve(handler, settings.host, ws_port, ping_interval=None, max_size=2**20)
            ws_servers.append(ws_server)
            ws_bound = next(iter(ws_server.sockets)).getsockname()[1]
            endpoints[domain] = Endpoints(
                rest_url=_url("http", settings.host, rest_bound), ws_url=_url("ws", settings.host, ws_bound)
            )
        pump = asyncio.create_task(_pump(state, hub), name="kis-sim-pump")
        running = RunningSimulator(real=endpoints["real"], paper=endpoints["paper"], state=state, hub=hub)
        log.info(
            "kis_sim.started",
            real_rest=running.real.rest_url,
            real_ws=running.real.ws_url,
            paper_rest=running.paper.rest_url,
            paper_ws=running.paper.ws_url,
            market="replay" if settings.data_dir else "synthetic",
            accounts=[f"{a.domain}:{a.hts_id}" for a in settings.accounts],
        )
        yield running
    finally:
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        for ws_server in ws_servers:
            ws_server.close()
        for ws_server in ws_servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws_server.wait_closed(), SHUTDOWN_TIMEOUT_SECONDS)
        for server, _ in rest_servers:
            server.should_exit = True
        for _, task in rest_servers:
            try:
                await asyncio.wait_for(task, SHUTDOWN_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("kis_sim.rest_shutdown_timeout", timeout=SHUTDOWN_TIMEOUT_SECONDS)
        log.info("kis_sim.stopped")
