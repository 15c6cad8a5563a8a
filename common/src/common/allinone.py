"""All-in-one mode: every installed service in one process, on SQLite and the in-process bus.

The gateway app serves :8000 with every other service mounted under ``/services/<name>``;
the dashboard serves :8080. Starlette does not run the lifespan of mounted apps, so this
runner enters each child's lifespan itself, in order, and leaves them in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from pathlib import Path

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from starlette.types import ASGIApp, Receive, Scope, Send

from common.errors import Operational, TradebotError
from common.kis.settings import KisDomain, KisSettings
from common.kis.sim import RunningSimulator, SimulatorSettings, serve_simulator
from common.logging import configure
from common.runtime import Runtime
from common.service import ManagedServer, ServiceSpec, load_settings, stop_on_signals
from common.settings import Mode, RuntimeSettings, TradebotSettings, secret_values

log = structlog.get_logger(__name__)

GATEWAY = "api-gateway"
WEB = "web-interface"


class AllInOneSettings(TradebotSettings):
    model_config = SettingsConfigDict(env_prefix="TRADEBOT_ALLINONE_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    web_port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("var")
    # Start the KIS simulator and point every service's KIS client at it (the safe default:
    # nothing reaches a real broker unless this is turned off and KIS_* settings are given).
    kis_simulator: bool = True


def simulator_kis_settings(
    sim: RunningSimulator, data_dir: Path, domain: KisDomain = KisDomain.PAPER
) -> KisSettings | None:
    """Client settings for the simulator's ``domain``, with its first account there (None without one)."""
    account = next((a for a in sim.settings.accounts if a.domain == domain.value), None)
    if account is None:
        return None
    paper = domain is KisDomain.PAPER
    return KisSettings(
        domain=domain,
        real_rest_url=sim.real.rest_url,
        real_ws_url=sim.real.ws_url,
        paper_rest_url=sim.paper.rest_url,
        paper_ws_url=sim.paper.ws_url,
        appkey=SecretStr(account.appkey),
        appsecret=account.appsecret,
        cano=SecretStr(account.cano),
        acnt_prdt_cd=SecretStr(account.acnt_prdt_cd),
        hts_id=SecretStr(account.hts_id),
        rate_per_second=sim.settings.paper_rest_per_second if paper else sim.settings.real_rest_per_second,
        token_cache_path=data_dir / "kis-tokens.json",
    )


def discover_services() -> dict[str, ServiceSpec]:
    """Every installed service, found through the ``tradebot.services`` entry points."""
    found: dict[str, ServiceSpec] = {}
    for entry in entry_points(group="tradebot.services"):
        spec = entry.load()
        if not isinstance(spec, ServiceSpec):
            raise Operational(f"entry point {entry.name} is not a ServiceSpec")
        found[spec.name] = spec
    return found


INTERNAL_HEADER = "x-tradebot-internal"


class InternalOnly:
    """Refuses requests to a mounted service unless they carry this process's internal token.

    Mounted under the gateway's port, the services would otherwise be reachable around the
    gateway's authentication; only the gateway's own client sends the token.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers", [])).get(INTERNAL_HEADER.encode(), b"")
            if not hmac.compare_digest(given, self._token):
                response = JSONResponse(
                    {"error": "forbidden", "message": "internal service route; use /api/v1", "detail": None},
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AllInOne:
    """Builds the two apps from the installed services and runs them until stopped."""

    def __init__(self, runtime: Runtime, settings: AllInOneSettings, specs: dict[str, ServiceSpec]) -> None:
        missing = {GATEWAY, WEB} - set(specs)
        if missing:
            raise Operational(f"all-in-one needs {', '.join(sorted(missing))} installed")
        self.runtime = runtime
        self.settings = settings
        self.specs = specs
        gateway_base = f"http://{settings.host}:{settings.gateway_port}"
        self.children = [name for name in sorted(specs) if name not in (GATEWAY, WEB)]
        runtime.extras["upstreams"] = {name: f"{gateway_base}/services/{name}" for name in self.children}
        runtime.extras["gateway_url"] = gateway_base
        token = secrets.token_urlsafe(32)
        runtime.extras["internal_headers"] = {INTERNAL_HEADER: token}
        self.gateway = specs[GATEWAY].create_app(runtime)
        self.mounted: list[FastAPI] = []
        for name in self.children:
            child = specs[name].create_app(runtime)
            self.gateway.mount(f"/services/{name}", InternalOnly(child, token), name=name)
            self.mounted.append(child)
        self.web = specs[WEB].create_app(runtime)
        self.servers: list[ManagedServer] = []

    @contextlib.asynccontextmanager
    async def mounted_lifespans(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for child in self.mounted:
                await stack.enter_async_context(child.router.lifespan_context(child))
            yield

    def _servers(self) -> list[ManagedServer]:
        def config(app: FastAPI, port: int) -> uvicorn.Config:
            return uvicorn.Config(app, host=self.settings.host, port=port, log_config=None, lifespan="on")

        return [
            ManagedServer(config(self.gateway, self.settings.gateway_port)),
            ManagedServer(config(self.web, self.settings.web_port)),
        ]

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True

    async def serve(self, on_ready: Callable[[], None] | None = None, *, handle_signals: bool = False) -> None:
        self.servers = self._servers()
        if handle_signals:
            stop_on_signals(*self.servers)
        async with self.mounted_lifespans():
            tasks = [asyncio.create_task(server.serve()) for server in self.servers]
            while not all(server.started for server in self.servers):
                if any(task.done() for task in tasks):
                    self.stop()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    raise Operational(
                        f"could not start: is port {self.settings.gateway_port} or {self.settings.web_port} in use?"
                    )
                await asyncio.sleep(0.05)
            if on_ready is not None:
                on_ready()
            await asyncio.gather(*tasks)


def main() -> None:
    """``tradebot-allinone``: the whole platform in one process, until Ctrl-C."""
    try:
        settings: AllInOneSettings = load_settings(AllInOneSettings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database_default = f"sqlite+aiosqlite:///{(settings.data_dir / 'tradebot.db').resolve()}"
        os.environ.setdefault("TRADEBOT_DATABASE_URL", database_default)
        runtime_settings: RuntimeSettings = load_settings(RuntimeSettings, mode=Mode.ALLINONE)
    except TradebotError as exc:
        sys.stderr.write(f"tradebot-allinone: {exc.message}\n")
        raise SystemExit(2) from None
    configure(
        "allinone",
        json_output=runtime_settings.log_json,
        level=runtime_settings.log_level,
        mode=Mode.ALLINONE.value,
        logstash_host=runtime_settings.logstash_host,
        logstash_port=runtime_settings.logstash_port,
        secrets=secret_values(runtime_settings),
    )

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(Runtime.from_settings(runtime_settings))
            simulator: RunningSimulator | None = None
            if settings.kis_simulator:
                simulator = await stack.enter_async_context(serve_simulator(load_settings(SimulatorSettings)))
                runtime.extras["kis_simulator"] = simulator
                runtime.extras["kis"] = simulator_kis_settings(simulator, settings.data_dir)
                # KIS allows one WebSocket session per app key, and the trader's fill notices hold
                # the paper account's: market data streams with the real-domain account, which
                # never trades (a second key, as KIS users run market data beside an account).
                runtime.extras["kis_market_data"] = simulator_kis_settings(simulator, settings.data_dir, KisDomain.REAL)
                # The simulator's market may run in another time (a replay, accelerated): KIS
                # clients follow its clock so token expiry and session hours agree with it.
                runtime.extras["kis_clock"] = simulator.clock
            platform = AllInOne(runtime, settings, discover_services())
            dashboard = f"http://{settings.host}:{settings.web_port}/"
            api = f"http://{settings.host}:{settings.gateway_port}/"

            kis = "KIS_* settings"
            if simulator is not None:
                kis = f"{simulator.paper.rest_url} (paper), {simulator.real.rest_url} (real)"

            def announce() -> None:
                log.info("allinone.ready", dashboard=dashboard, api=api, services=sorted(platform.specs), kis=kis)
                sys.stderr.write(
                    f"\ntrading-bot is running (all-in-one)\n  dashboard:     {dashboard}\n"
                    f"  API gateway:   {api}\n  KIS simulator: {kis}\n  stop with Ctrl-C\n\n"
                )

            await platform.serve(on_ready=announce, handle_signals=True)
            sys.stderr.write("trading-bot stopped cleanly.\n")

    try:
        asyncio.run(run())
    except TradebotError as exc:
        sys.stderr.write(f"tradebot-allinone: {exc.message}\n")
        raise SystemExit(1) from None
