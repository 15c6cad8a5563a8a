"""Benchmark: the platform in distributed mode — every service's memory at rest and under the
ingest load, and tick → decision → order accepted across processes.

``common.cluster`` starts the KIS simulator and the seven services as separate OS processes on
127.0.0.1 (free ports) against a private PostgreSQL database and a private RabbitMQ exchange and
queue prefix, exactly as ``scripts/run_cluster.sh`` does. Then, in order:

1. at rest: a few seconds after every ``/readyz`` answered, each process's current resident set
   (``VmRSS``) and its peak so far (``VmHWM``) from /proc;
2. under the ingest load: the tick batches of ``ingest.py`` published to the cluster's exchange
   until the data-processor has stored every tick; then each process's peak (``VmHWM``) again;
3. trading latency: a watchlist of 20 symbols, one ``features.v1`` bar per symbol per simulated
   minute, alternately "buy to 0.2 % of equity" and "flat" (``policy.py``), published to RabbitMQ;
   the inferencer process decides, calls the trader process over HTTP, the trader places a
   market order with the simulator process. A sample is the time from publishing the bar to the
   simulator's acceptance notice arriving on a WebSocket session of its own (a second paper app
   key subscribed to the trader's HTS id, as the trader itself listens); the first round
   (quotes of the day) is warm-up. The simulator's clock runs at 60× so a round is a minute.
   From the services' JSON log timestamps (one machine clock) the same samples are also timed
   until the trader has the simulator's REST answer, and split into stages (p50 of each).

The memory reference is a bare ``python -c "import fastapi"`` process in the same run.

    .venv/bin/python scripts/bench/distributed.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import benchlib
import httpx
import structlog
from benchlib import Figure
from ingest import build_messages, tick_count
from policy import FEATURE_SET, build_model
from pydantic import SecretStr

from common.bus.rabbitmq import RabbitMQBus
from common.clock import Clock
from common.cluster import SIMULATOR, Cluster, ClusterConfig
from common.contracts import Envelope, FeaturesV1
from common.kis import KisClient, KisSettings
from common.kis.clock import follow_simulator_clock
from common.kis.errors import KisError
from common.kis.realtime import ExecutionNotice
from common.kis.sim.settings import SimAccount, dev_account

SECTION = "distributed mode (processes): memory and trading latency"
# A Monday session in the simulator's synthetic market, 60 simulated seconds per real second.
SIM_START = "2024-03-04T09:01:00+09:00"
SIM_SPEED = 60.0
SESSION_END = (15, 20)
WATCHLIST = 20
MAX_PRICE = 150_000  # 0.2 % of the 100 M KRW account must buy at least one share
ACCEPT_TIMEOUT = 5.0
MAX_SKIPPED = 10


@dataclass
class Memory:
    """Per process, in KiB."""

    rest_rss: dict[str, int] = field(default_factory=dict)
    rest_peak: dict[str, int] = field(default_factory=dict)
    load_peak: dict[str, int] = field(default_factory=dict)


@dataclass
class Latency:
    samples_ms: list[float] = field(default_factory=list)
    # (symbol, wall-clock time of publishing, of the acceptance notice) of each counted sample,
    # to find it in the services' logs.
    published: list[tuple[str, float, float]] = field(default_factory=list)
    skipped: int = 0
    # From the services' own log timestamps (see ``stages``): publish → the trader has the
    # simulator's REST answer, and the p50 of each stage.
    trader_ms: list[float] = field(default_factory=list)
    stages_p50_ms: dict[str, float] = field(default_factory=dict)


def sim_accounts() -> str:
    """The simulator's development accounts plus a second paper app key for the notice listener."""
    accounts = [dev_account("real"), dev_account("paper"), dev_account("paper", 1)]
    return json.dumps([account_json(a) for a in accounts])


def account_json(account: SimAccount) -> dict[str, Any]:
    return {**account.model_dump(mode="json"), "appsecret": account.appsecret.get_secret_value()}


def cluster_config(url: str, workdir: Path, exchange: str, model_uri: str) -> ClusterConfig:
    return ClusterConfig(
        database_url=url,
        amqp_url=benchlib.amqp_url(),
        work_dir=workdir / "cluster",
        exchange=exchange,
        free_ports=True,
        sim_data_dir=None,  # the synthetic market: any six-digit code trades
        sim_speed=SIM_SPEED,
        sim_start=SIM_START,
        sim_rest_per_second=1000.0,
        stop_timeout=15.0,
        env={
            # The same trader and model settings as trading_latency.py's watchlist shape.
            "TRADER_DECISION_ORDER_TYPE": "market",
            "TRADER_REBALANCE_BAND": "0",
            "TRADER_MIN_REBALANCE_KRW": "0",
            "TRADER_RECONCILE_INTERVAL_SECONDS": "3600",
            "TRADER_POLL_INTERVAL_SECONDS": "1",
            "TRADER_RISK": json.dumps({"max_orders_per_minute": None, "max_gross_exposure_krw": None}),
            "INFERENCER_MODEL_URI": model_uri,
        },
        member_env={SIMULATOR: {"KIS_SIM_ACCOUNTS": sim_accounts()}},
    )


# -- memory -------------------------------------------------------------------------------------


def read_memory(cluster: Cluster, into_rss: dict[str, int] | None, into_peak: dict[str, int]) -> None:
    for name, member in cluster.members.items():
        if member.process is None:
            continue
        if into_rss is not None:
            into_rss[name] = sum(benchlib.rss_kib(pid) for pid in benchlib.group_pids(member.process.pid))
        into_peak[name] = benchlib.peak_rss_kib(member.process.pid)


async def ingest_load(url: str, exchange: str, ticks: int, timeout: float) -> float:
    """Publish ``ticks`` ticks to the cluster and wait until all are stored; returns ticks/s."""
    messages = build_messages(ticks)
    total = tick_count(messages)
    publisher = RabbitMQBus(benchlib.amqp_url(), exchange=exchange)
    await publisher.start()
    conn = await asyncpg.connect(benchlib.dsn(url))
    try:
        started = time.perf_counter()
        for start in range(0, len(messages), 20):
            await publisher.publish_batch(messages[start : start + 20])
        while await conn.fetchval("SELECT count(*) FROM ticks") < total:
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"ingest load: not every tick stored within {timeout:.0f} s")
            await asyncio.sleep(0.1)
        return total / (time.perf_counter() - started)
    finally:
        await conn.close()
        await publisher.close()


# -- trading latency ----------------------------------------------------------------------------


def listener_settings(cluster: Cluster, workdir: Path) -> KisSettings:
    """The second paper app key, listening to the trader's account's notices (tr_key = HTS id)."""
    listener, trader = dev_account("paper", 1), dev_account("paper")
    ports = cluster.sim_ports
    return KisSettings(
        domain="paper",
        real_rest_url=f"http://127.0.0.1:{ports['real_rest']}",
        real_ws_url=f"ws://127.0.0.1:{ports['real_ws']}",
        paper_rest_url=f"http://127.0.0.1:{ports['paper_rest']}",
        paper_ws_url=f"ws://127.0.0.1:{ports['paper_ws']}",
        appkey=SecretStr(listener.appkey),
        appsecret=listener.appsecret,
        cano=SecretStr(listener.cano),
        acnt_prdt_cd=SecretStr(listener.acnt_prdt_cd),
        hts_id=SecretStr(trader.hts_id),
        rate_per_second=1000.0,
        token_cache_path=workdir / "listener-tokens.json",
    )


async def pick_watchlist(client: KisClient) -> list[tuple[str, int]]:
    """``WATCHLIST`` codes of the synthetic market priced under ``MAX_PRICE``, with their price."""
    watchlist: list[tuple[str, int]] = []
    for code in (f"{100_000 + i:06d}" for i in range(2_000)):
        with contextlib.suppress(KisError):
            price = (await client.get_quote(code)).price
            if 0 < price < MAX_PRICE:
                watchlist.append((code, price))
        if len(watchlist) == WATCHLIST:
            return watchlist
    raise SystemExit(f"fewer than {WATCHLIST} codes priced under {MAX_PRICE:,} KRW")


async def next_minute(clock: Clock) -> datetime:
    """Sleep until the simulator's clock enters its next minute; returns that minute."""
    now = clock.now()
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    await asyncio.sleep(max(0.0, (minute - now).total_seconds() / SIM_SPEED) + 0.05)
    return minute


async def trading_latency(cluster: Cluster, exchange: str, workdir: Path, samples: int) -> Latency:
    clock = await follow_simulator_clock(cluster.url(SIMULATOR), timeout=30)
    settings = listener_settings(cluster, workdir)
    accepted: dict[str, tuple[float, float]] = {}  # symbol → (perf_counter, wall clock) of the notice
    arrived = asyncio.Event()
    result = Latency()
    async with httpx.AsyncClient(timeout=10.0) as http:
        client = KisClient(settings, http=http, clock=clock)
        watchlist = await pick_watchlist(client)
        publisher = RabbitMQBus(benchlib.amqp_url(), exchange=exchange)
        await publisher.start()
        async with client.websocket() as ws:
            await ws.wait_connected(timeout=30)
            await ws.subscribe_notices()

            async def listen() -> None:
                async for event in ws.events():
                    if isinstance(event, ExecutionNotice) and not event.is_fill and not event.is_rejected:
                        accepted.setdefault(event.symbol, (time.perf_counter(), time.time()))
                        arrived.set()

            listening = asyncio.create_task(listen(), name="bench-notice-listener")
            try:
                rounds = -(-samples // WATCHLIST) + 1  # plus the warm-up round
                for round_ in range(rounds):
                    minute = await next_minute(clock)
                    if (minute.hour, minute.minute) >= SESSION_END:
                        raise SystemExit(f"the simulated session is over ({minute}); the cluster started too slowly")
                    signal = 0.001 if round_ % 2 == 0 else -0.001
                    for symbol, price in watchlist:
                        bar = FeaturesV1(
                            symbol=symbol,
                            timeframe="1m",
                            ts=minute,
                            close=price,
                            values={"ret_1": signal, "ret_5": 0.002, "rsi_14": 51.0, "vol_ratio": 1.1, "macd": None},
                            feature_set=FEATURE_SET,
                        )
                        wall = time.time()
                        elapsed = await one_sample(publisher, bar, accepted, arrived)
                        if elapsed is None:
                            result.skipped += 1
                            if result.skipped > MAX_SKIPPED:
                                raise SystemExit(f"more than {MAX_SKIPPED} decisions placed no order")
                        elif round_ > 0:
                            result.samples_ms.append(elapsed)
                            result.published.append((symbol, wall, accepted[symbol][1]))
            finally:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
                await publisher.close()
    return result


async def one_sample(
    publisher: RabbitMQBus, bar: FeaturesV1, accepted: dict[str, tuple[float, float]], arrived: asyncio.Event
) -> float | None:
    """Milliseconds from publishing one bar to its order's acceptance notice (None: no order)."""
    symbol = bar.symbol
    accepted.pop(symbol, None)
    published = time.perf_counter()
    await publisher.publish(f"features.1m.{symbol}", Envelope(producer="bench", payload=bar))
    deadline = published + ACCEPT_TIMEOUT
    while symbol not in accepted:
        arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), max(0.0, deadline - time.perf_counter()))
        if time.perf_counter() >= deadline and symbol not in accepted:
            return None
    return (accepted[symbol][0] - published) * 1000


def log_events(path: Path, event: str) -> dict[str, list[float]]:
    """symbol → wall-clock times (sorted) of ``event`` in a service's JSON log."""
    found: dict[str, list[float]] = {}
    for line in path.read_text(errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError):
            record = json.loads(line)
            if record["event"] == event:
                stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
                found.setdefault(record["symbol"], []).append(stamp)
    return {symbol: sorted(times) for symbol, times in found.items()}


def first_after(times: list[float], instant: float) -> float | None:
    return next((t for t in times if t >= instant), None)


def stages(log_dir: Path, latency: Latency) -> None:
    """Fill ``trader_ms`` and ``stages_p50_ms`` from the services' log timestamps (one machine clock).

    A sample: published → the inferencer stored its decision (``inferencer.decided``) → the
    simulator accepted the order (its notice reached the benchmark) → the trader has the
    simulator's REST answer (the KIS client's ``kis.order_accepted``).
    """
    decided = log_events(log_dir / "inferencer.log", "inferencer.decided")
    answered = log_events(log_dir / "trader.log", "kis.order_accepted")
    parts: dict[str, list[float]] = {}
    for symbol, published, noticed in latency.published:
        made = first_after(decided.get(symbol, []), published)
        told = first_after(answered.get(symbol, []), made) if made is not None else None
        if made is None or told is None:
            continue
        latency.trader_ms.append((told - published) * 1000)
        for stage, ms in (
            ("publish → decision stored (bus, inference, decision row)", made - published),
            (
                "→ simulator accepted the order (HTTP to the trader, its checks and rows, the order call)",
                noticed - made,
            ),
            ("→ the trader has the simulator's answer", told - noticed),
        ):
            parts.setdefault(stage, []).append(ms * 1000)
    latency.stages_p50_ms = {stage: statistics.median(values) for stage, values in parts.items()}


# -- the run ------------------------------------------------------------------------------------


def run(quick: bool, workdir: Path) -> tuple[Memory, float, Latency, int]:
    server = benchlib.database_server()
    url = asyncio.run(benchlib.create_database(server, "tradebot_bench_cluster_"))
    exchange = benchlib.unique("bench-cluster-")
    config = cluster_config(url, workdir, exchange, build_model(workdir / "model"))
    memory = Memory()
    ticks = 100_000 if quick else 400_000
    try:
        cluster = Cluster(config)
        cluster.migrate()
        with cluster:  # starts every process and waits for readiness; stops them all on exit
            time.sleep(2.0 if quick else 10.0)
            read_memory(cluster, memory.rest_rss, memory.rest_peak)
            rate = asyncio.run(ingest_load(url, exchange, ticks, timeout=120))
            time.sleep(1.0)
            read_memory(cluster, None, memory.load_peak)
            latency = asyncio.run(trading_latency(cluster, exchange, workdir, 100 if quick else 400))
        stages(cluster.log_dir, latency)
    finally:
        asyncio.run(benchlib.drop_database(server, url))
        asyncio.run(benchlib.delete_bus_objects(benchlib.amqp_url(), f"{exchange}.", exchange))
    return memory, rate, latency, ticks


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def memory_lines(memory: Memory, reference_kib: int, ticks: int, rate: float) -> list[str]:
    lines = [
        f"- memory of each process (MiB; peak = the kernel's high-water mark `VmHWM`); the ingest load is"
        f" {ticks:,} ticks published to the cluster and all stored ({rate:,.0f} ticks/s end to end, the other"
        f' services running); reference: a bare `python -c "import fastapi"` process, **{mib(reference_kib)} MiB**'
        " (same run)",
        "",
        "  | process | RSS at rest | peak at rest | peak under ingest | peak under ingest / reference |",
        "  |---|---|---|---|---|",
    ]
    for name in memory.rest_peak:
        load = memory.load_peak.get(name, 0)
        lines.append(
            f"  | {name} | {mib(memory.rest_rss.get(name, 0))} | {mib(memory.rest_peak[name])} | {mib(load)}"
            f" | {load / reference_kib:.1f}× |"
        )
    total_rest, total_load = sum(memory.rest_peak.values()), sum(memory.load_peak.values())
    lines.append(
        f"  | all {len(memory.rest_peak)} processes | {mib(sum(memory.rest_rss.values()))} | {mib(total_rest)}"
        f" | {mib(total_load)} | {total_load / reference_kib:.1f}× |"
    )
    return lines


def latency_lines(latency: Latency) -> list[str]:
    samples = latency.samples_ms
    p50, p99 = benchlib.percentile(samples, 50), benchlib.percentile(samples, 99)
    lines = [
        f"- tick → decision → order accepted by the simulator, distributed (inferencer, trader and simulator as"
        f" processes, RabbitMQ, PostgreSQL), {len(samples)} samples ({latency.skipped} decisions without an order"
        f" not counted): **p50 {p50:.1f} ms, p99 {p99:.1f} ms** (mean {statistics.fmean(samples):.1f} ms,"
        f" max {max(samples):.1f} ms); goal p99 ≤ 50 ms: {'met' if p99 <= 50 else 'NOT met'}"
    ]
    if latency.trader_ms:
        t50, t99 = benchlib.percentile(latency.trader_ms, 50), benchlib.percentile(latency.trader_ms, 99)
        lines.append(
            f"- the same samples until the trader has the simulator's REST answer (from the log timestamps,"
            f" {len(latency.trader_ms)} samples): p50 {t50:.1f} ms, p99 {t99:.1f} ms"
        )
    if latency.stages_p50_ms:
        lines.append(
            "- p50 by stage: " + "; ".join(f"{stage} {ms:.1f} ms" for stage, ms in latency.stages_p50_ms.items())
        )
    return lines


def latency_figures(latency: Latency, command: str) -> list[Figure]:
    p50, p99 = benchlib.percentile(latency.samples_ms, 50), benchlib.percentile(latency.samples_ms, 99)
    found = [
        Figure(
            "tick → order accepted, distributed",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            "—",
            "—",
            "p99 ≤ 50 ms",
            p99 <= 50,
            command,
        )
    ]
    if latency.trader_ms:
        t50, t99 = benchlib.percentile(latency.trader_ms, 50), benchlib.percentile(latency.trader_ms, 99)
        found.append(
            Figure(
                "tick → order acknowledged to the trader, distributed",
                f"p50 {t50:.1f} ms, p99 {t99:.1f} ms",
                "—",
                "—",
                "p99 ≤ 50 ms (if read as the trader's acknowledgement)",
                t99 <= 50,
                command,
            )
        )
    return found


def memory_figures(memory: Memory, reference_kib: int, command: str) -> list[Figure]:
    services = [name for name in memory.rest_peak if name != SIMULATOR]
    rest_largest = max(services, key=lambda n: memory.rest_peak[n])
    load_largest = max(services, key=lambda n: memory.load_peak[n])
    processor = memory.load_peak["data-processor"]
    reference = f"bare `import fastapi` {mib(reference_kib)} MiB"
    return [
        Figure(
            "peak RSS per service, distributed, at rest",
            f"largest {rest_largest} {mib(memory.rest_peak[rest_largest])} MiB;"
            f" {len(services)} services {mib(sum(memory.rest_peak[n] for n in services))} MiB",
            reference,
            f"{memory.rest_peak[rest_largest] / reference_kib:.1f}× (largest)",
            "none set",
            None,
            command,
        ),
        Figure(
            "peak RSS per service, distributed, under ingest",
            f"data-processor {mib(processor)} MiB; largest {load_largest} {mib(memory.load_peak[load_largest])} MiB",
            reference,
            f"{processor / reference_kib:.1f}× (data-processor)",
            "none set",
            None,
            command,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k ticks and 100 latency samples")
    parser.add_argument("--command", default="scripts/bench/distributed.py")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--work-dir", type=Path, help="keep the processes' logs here (default: a temporary dir)")
    args, _ = parser.parse_known_args()
    # This process's own KIS client and bus logs (debug by default) are not part of the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    reference_kib = benchlib.bare_fastapi_rss_kib()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        workdir = args.work_dir or Path(tmp)
        memory, rate, latency, ticks = run(args.quick, workdir)
    found = [*latency_figures(latency, args.command), *memory_figures(memory, reference_kib, args.command)]
    lines = [*latency_lines(latency), *memory_lines(memory, reference_kib, ticks, rate)]
    for line in lines:
        print(line)
    if not args.no_record:
        setting = (
            "`common.cluster`: the KIS simulator (synthetic market, 60× clock) and the seven services as separate"
            " processes on 127.0.0.1, a private PostgreSQL database and RabbitMQ exchange."
        )
        benchlib.write_section(SECTION, args.command, lines, setting)
        benchlib.update_summary(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
