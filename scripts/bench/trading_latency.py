"""Benchmark: tick → decision → order accepted by the KIS simulator (p50 / p99).

One process, like all-in-one mode: the simulator on loopback sockets, the trader served by
uvicorn on a loopback port (the inferencer reaches it over real HTTP), the inferencer with a
small TorchScript LSTM policy, the in-process bus, SQLite (or ``--database-url``). Each sample
publishes one ``features.v1`` bar and times it until the simulator's exchange accepts the order
it caused. Prints the figures and records them in docs/benchmarks.md under "trading latency".

Symbols: by default a fixed watchlist, repeated as live trading repeats it — each round is the
next minute's bar of every watchlist symbol, alternately signalling "buy to 0.2 % of equity"
and "flat", with market orders so that the simulator fills them as its clock moves on (the next
round has a position to sell or none to hold); the first round, in which the trader fetches
each symbol's quote of the day, is warm-up. ``--fresh-symbols`` is the older shape: a new
symbol every sample, so each one also pays for a first quote and for the simulator building
that symbol's synthetic market — in this same process, on the same event loop.

    .venv/bin/python scripts/bench/trading_latency.py [--quick] [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib
import httpx
import structlog
import uvicorn
from benchlib import Figure
from policy import build_model
from pydantic import SecretStr

from common.clock import KST, FixedClock
from common.contracts import Envelope, FeaturesV1
from common.kis import KisClient, KisSettings
from common.kis.sim import SimulatorSettings, serve_simulator
from common.kis.sim.exchange import Notice
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from inferencer.app import create_app as create_inferencer
from inferencer.settings import InferencerSettings
from trader.app import create_app as create_trader
from trader.broker import KisBroker
from trader.settings import RiskLimits, TraderSettings

SECTION = "trading latency (tick → decision → order accepted)"
WATCHLIST = 20


async def run(
    samples: int, warmup: int, database_url: str | None, workdir: Path, *, fresh_symbols: bool = False
) -> dict[str, Any]:
    clock = FixedClock(datetime(2024, 3, 4, 10, 0, tzinfo=KST))
    sim_settings = SimulatorSettings(
        real_rest_port=0, real_ws_port=0, paper_rest_port=0, paper_ws_port=0, seed=7,
        paper_rest_per_second=10_000.0, real_rest_per_second=10_000.0,
        token_calls_per_second=1000.0, approval_calls_per_second=1000.0,
    )  # fmt: skip
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    runtime_settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr(url))
    async with serve_simulator(sim_settings, clock) as sim, Runtime.from_settings(runtime_settings) as runtime:
        account = next(a for a in sim.settings.accounts if a.domain == "paper")
        kis = KisSettings(
            domain="paper",
            paper_rest_url=sim.paper.rest_url, paper_ws_url=sim.paper.ws_url,
            real_rest_url=sim.real.rest_url, real_ws_url=sim.real.ws_url,
            appkey=SecretStr(account.appkey), appsecret=account.appsecret, cano=SecretStr(account.cano),
            acnt_prdt_cd=SecretStr(account.acnt_prdt_cd), hts_id=SecretStr(account.hts_id),
            rate_per_second=1000.0, token_cache_path=workdir / "tokens.json",
        )  # fmt: skip
        broker = KisBroker(KisClient(kis, http=httpx.AsyncClient(timeout=5.0), clock=clock))
        trader_settings = TraderSettings(
            rebalance_band=0, min_rebalance_krw=0, reconcile_interval_seconds=3600, poll_interval_seconds=1.0,
            risk=RiskLimits(max_orders_per_minute=None, max_gross_exposure_krw=None),
            decision_order_type="limit" if fresh_symbols else "market",
        )  # fmt: skip
        trader = create_trader(runtime, settings=trader_settings, broker=broker, clock=clock)
        server = uvicorn.Server(uvicorn.Config(trader, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 — uvicorn offers no start event
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        to_trader = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
        inferencer = create_inferencer(
            runtime, settings=InferencerSettings(model_uri=build_model(workdir / "model")), trader=to_trader
        )
        accepted: dict[str, float] = {}
        answered: set[str] = set()
        arrived = asyncio.Event()

        def on_notice(notice: Notice) -> None:
            if not notice.filled:
                accepted.setdefault(notice.order.code, time.perf_counter())
                arrived.set()

        sim.exchange.subscribe(on_notice)
        # Told when the trader has answered a decision, with or without an order.
        trader_client = inferencer.state.inferencer.trader
        execute: Callable[[dict[str, Any]], Awaitable[httpx.Response]] = trader_client.execute

        async def execute_and_note(body: dict[str, Any]) -> httpx.Response:
            try:
                return await execute(body)
            finally:
                answered.add(body["symbol"])
                arrived.set()

        trader_client.execute = execute_and_note
        latencies: list[float] = []
        skipped = 0

        def priced(code: str) -> tuple[str, int] | None:
            # 0.2 % of equity must buy at least one share: skip codes priced above it.
            quote = sim.market.quote(code, clock.now())
            return (code, quote.price) if quote and quote.price < 150_000 else None

        codes = (f"{100_000 + i:06d}" for i in range(1_000_000))
        watchlist = [] if fresh_symbols else [next(p for c in codes if (p := priced(c))) for _ in range(WATCHLIST)]
        try:
            async with inferencer.router.lifespan_context(inferencer):
                for index in range(samples + warmup):
                    if fresh_symbols:
                        symbol, close = next(p for c in codes if (p := priced(c)))
                        signal = 0.001
                    else:
                        round_, slot = divmod(index, WATCHLIST)
                        if slot == 0:
                            clock.advance(timedelta(minutes=1))  # the next bar: last round's orders fill
                            await asyncio.sleep(0.2)  # …and their fills are booked before the round
                        symbol = watchlist[slot][0]
                        quote = sim.market.quote(symbol, clock.now())
                        assert quote is not None
                        close = quote.price
                        signal = 0.001 if round_ % 2 == 0 else -0.001
                    bar = FeaturesV1(
                        symbol=symbol, timeframe="1m", ts=clock.now(), close=close,
                        values={"ret_1": signal, "ret_5": 0.002, "rsi_14": 51.0, "vol_ratio": 1.1, "macd": None},
                        feature_set="bench",
                    )  # fmt: skip
                    accepted.pop(symbol, None)
                    answered.discard(symbol)
                    published = time.perf_counter()
                    await runtime.bus.publish(f"features.1m.{symbol}", Envelope(producer="bench", payload=bar))
                    try:
                        async with asyncio.timeout(10):
                            while symbol not in accepted and symbol not in answered:
                                arrived.clear()
                                await arrived.wait()
                    except TimeoutError:
                        raise SystemExit(f"no answer for {symbol} within 10 s") from None
                    if symbol not in accepted:
                        skipped += 1  # the trader placed no order (e.g. the buy had not filled yet)
                    elif index >= warmup:
                        latencies.append((accepted[symbol] - published) * 1000)
        finally:
            await to_trader.aclose()
            server.should_exit = True
            await serving
        if not latencies:
            raise SystemExit(f"no order accepted ({skipped} decisions without one)")
        return {
            "samples": len(latencies),
            "skipped": skipped,
            "symbols": "fresh symbol per sample" if fresh_symbols else f"watchlist of {WATCHLIST} symbols repeated",
            "p50_ms": benchlib.percentile(latencies, 50),
            "p99_ms": benchlib.percentile(latencies, 99),
            "mean_ms": statistics.fmean(latencies),
            "max_ms": max(latencies),
            "database": "PostgreSQL" if url.startswith("postgres") else "SQLite",
        }


def record(result: dict[str, Any], command: str) -> None:
    setting = (
        f"One process (all-in-one shape: in-process bus, {result['database']}, trader over loopback HTTP,"
        f" simulator over loopback sockets); {result['symbols']}."
    )
    met = result["p99_ms"] <= 50
    line = (
        f"- tick → decision → order accepted by the simulator, {result['samples']} samples"
        f" ({result['skipped']} decisions without an order not counted): "
        f"**p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms** (mean {result['mean_ms']:.1f} ms, "
        f"max {result['max_ms']:.1f} ms); goal p99 ≤ 50 ms (set for distributed mode): {'met' if met else 'NOT met'}"
    )
    benchlib.write_section(SECTION, command, [line], setting)
    figure = Figure(
        f"tick → order accepted, all-in-one shape ({result['database']})",
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms",
        "—",
        "—",
        "p99 ≤ 50 ms (goal is for distributed)",
        met,
        command,
    )
    benchlib.update_summary([figure])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 samples instead of 400")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--database-url", help="e.g. postgresql+asyncpg://… (default: a temporary SQLite file)")
    parser.add_argument("--command", default="scripts/bench/trading_latency.py")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--fresh-symbols", action="store_true", help="a new symbol every sample (the older shape)")
    args, _ = parser.parse_known_args()
    samples = args.samples or (100 if args.quick else 400)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(int(os.environ.get("BENCH_LOG_LEVEL", "40")))
    )
    with tempfile.TemporaryDirectory() as tmp:
        # Watchlist: the whole first round is warm-up (each symbol's first quote of the day).
        warmup = 10 if args.fresh_symbols else WATCHLIST
        result = asyncio.run(run(samples, warmup, args.database_url, Path(tmp), fresh_symbols=args.fresh_symbols))
    print(
        f"trading latency ({result['symbols']}, {result['database']}): tick → decision → order accepted,"
        f" {result['samples']} samples ({result['skipped']} skipped): "
        f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms"
    )
    if not args.no_record:
        record(result, args.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
