"""Benchmark: end-to-end tick ingest (RabbitMQ → data-processor process → PostgreSQL) next to a
bare COPY of the same rows, and feature computation next to calling TA-Lib directly.

Run through ``scripts/bench.sh``; prints the figures and writes ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path

import aio_pika
import asyncpg  # type: ignore[import-untyped]
import benchlib
import numpy as np
import talib
from benchlib import Figure

from common.bus.rabbitmq import RabbitMQBus
from common.clock import kst_datetime
from common.contracts import Envelope, MarketTickBatchV1, Tick
from common.db import migrate
from data_processor.features import WINDOW, Series, compute_range

SECTION = "data-processor"
SYMBOLS = [f"{n:06d}" for n in range(5930, 5930 + 20)]
BATCH = 5_000


def build_messages(total: int) -> list[tuple[str, Envelope]]:
    """``total`` ticks of 20 symbols over one session, in batches of one symbol each."""
    start = kst_datetime(date(2024, 1, 2), dtime(9, 0))
    per_symbol = total // len(SYMBOLS)
    step = timedelta(milliseconds=250)  # four prints a second: a liquid KRX stock
    messages: list[tuple[str, Envelope]] = []
    for index, symbol in enumerate(SYMBOLS):
        ticks = [
            Tick(
                symbol=symbol, ts=start + step * i, seq=i, price=50_000 + (i * 7 + index) % 200 * 50, volume=1 + i % 50
            )
            for i in range(per_symbol)
        ]
        messages.extend(
            (f"tick.{symbol}", Envelope(producer="bench", payload=MarketTickBatchV1(ticks=ticks[s : s + BATCH])))
            for s in range(0, len(ticks), BATCH)
        )
    # Interleave symbols, as a live feed would.
    messages.sort(key=lambda m: (first_tick(m[1]).ts, m[0]))
    return messages


def batch(envelope: Envelope) -> MarketTickBatchV1:
    assert isinstance(envelope.payload, MarketTickBatchV1)
    return envelope.payload


def first_tick(envelope: Envelope) -> Tick:
    return batch(envelope).ticks[0]


def tick_count(messages: list[tuple[str, Envelope]]) -> int:
    return sum(len(batch(envelope).ticks) for _, envelope in messages)


async def bare_copy(url: str, messages: list[tuple[str, Envelope]]) -> float:
    """Ticks/s of COPY straight into ``ticks`` (no staging, no conflict handling): the reference."""
    rows = [
        (t.symbol, t.ts, t.seq, t.price, t.volume, t.cum_volume, t.side) for _, e in messages for t in batch(e).ticks
    ]
    conn = await asyncpg.connect(benchlib.dsn(url))
    try:
        started = time.perf_counter()
        for s in range(0, len(rows), BATCH):
            await conn.copy_records_to_table(
                "ticks",
                records=rows[s : s + BATCH],
                columns=["symbol", "ts", "seq", "price", "volume", "cum_volume", "side"],
            )
        elapsed = time.perf_counter() - started
        await conn.execute("TRUNCATE ticks")
    finally:
        await conn.close()
    return len(rows) / elapsed


async def end_to_end(url: str, amqp: str, messages: list[tuple[str, Envelope]]) -> tuple[float, int, float]:
    """Ticks/s from the first publish to the last committed batch, with a data-processor process."""
    suffix = uuid.uuid4().hex[:8]
    exchange, queue = f"bench-{suffix}", f"bench-{suffix}.ticks"
    port = benchlib.free_port()
    env = {
        **os.environ,
        "TRADEBOT_DATABASE_URL": url,
        "TRADEBOT_AMQP_URL": amqp,
        "TRADEBOT_BUS_EXCHANGE": exchange,
        "TRADEBOT_LOG_LEVEL": "WARNING",
        "DATA_PROCESSOR_PORT": str(port),
        "DATA_PROCESSOR_TICK_QUEUE": queue,
        "DATA_PROCESSOR_BAR_QUEUE": f"{queue}.bars",
    }
    executable = str(Path(sys.executable).parent / "tradebot-data-processor")
    process = subprocess.Popen([executable], env=env)  # noqa: S603, ASYNC220 — our own console script
    publisher = RabbitMQBus(amqp, exchange=exchange)
    await publisher.start()
    conn = await asyncpg.connect(benchlib.dsn(url))
    try:
        await publisher.declare(queue, ["tick.#"])
        await _wait_ready(port, process)
        total = tick_count(messages)
        started = time.perf_counter()
        for s in range(0, len(messages), 20):
            await publisher.publish_batch(messages[s : s + 20])
        published = time.perf_counter() - started
        while await conn.fetchval("SELECT count(*) FROM processed_messages WHERE consumer = $1", queue) < len(messages):
            if process.poll() is not None:
                raise SystemExit("data-processor exited during the benchmark")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        stored = int(await conn.fetchval("SELECT count(*) FROM ticks"))
        if stored != total:
            raise SystemExit(f"lost ticks: published {total}, stored {stored}")
        return total / elapsed, stored, total / published
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        await publisher.close()
        await conn.close()
        connection = await aio_pika.connect(amqp)
        channel = await connection.channel()
        for name in (queue, f"{queue}.bars"):
            for extra in ("", ".dead", ".retry"):
                await channel.queue_delete(f"{name}{extra}")
        await channel.exchange_delete(exchange)
        await connection.close()


async def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit("data-processor did not start")
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("data-processor not ready in 60 s")


def direct_talib(s: Series, first: int) -> None:
    """The reference: the same TA-Lib calls on the same windows, results discarded."""
    for end in range(first, len(s)):
        w = s.window(end)
        talib.MACD(w.close, 12, 26, 9)
        talib.BBANDS(w.close, 20, 2.0, 2.0)
        talib.STOCH(w.high, w.low, w.close, 14, 3, 0, 3, 0)  # type: ignore[arg-type]  # 0: SMA
        talib.SMA(w.close, 5)
        talib.SMA(w.close, 60)
        talib.EMA(w.close, 12)
        talib.EMA(w.close, 26)
        talib.RSI(w.close, 14)
        talib.ATR(w.high, w.low, w.close, 14)
        talib.OBV(w.close, w.volume)
        talib.SMA(w.volume, 20)


def indicator_bench(bars: int) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    close = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.01, bars + WINDOW)))
    rows = [
        (int(c), int(c * 1.01), int(c * 0.99), int(c), int(v), None)
        for c, v in zip(close, rng.integers(1, 10_000, len(close)), strict=True)
    ]
    s = Series.of(rows)
    best_ours, best_ref = float("inf"), float("inf")
    for _ in range(3):
        started = time.perf_counter()
        compute_range(s, WINDOW)
        best_ours = min(best_ours, time.perf_counter() - started)
        started = time.perf_counter()
        direct_talib(s, WINDOW)
        best_ref = min(best_ref, time.perf_counter() - started)
    return best_ours, best_ref


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--command", default="scripts/bench.sh")
    args = parser.parse_args()
    server, amqp = benchlib.database_server(), benchlib.amqp_url()
    total = 200_000 if args.quick else 1_000_000
    messages = build_messages(total)
    url = await benchlib.create_database(server)
    try:
        await migrate(url)
        copy_rate = await bare_copy(url, messages)
        e2e_rate, stored, publish_rate = await end_to_end(url, amqp, messages)
    finally:
        await benchlib.drop_database(server, url)
    bars = 2_000 if args.quick else 10_000
    ours, reference = indicator_bench(bars)

    ratio = ours / reference
    lines = [
        f"- end-to-end ingest: **{e2e_rate:,.0f} ticks/s** ({stored:,} ticks in {len(messages)} batches of {BATCH:,},"
        f" all stored; publishing alone ran at {publish_rate:,.0f} ticks/s)",
        f"- bare COPY of the same rows into `ticks` (reference, same run): **{copy_rate:,.0f} ticks/s**"
        f" → pipeline at {e2e_rate / copy_rate:.2f}× of COPY; goal 100,000 ticks/s"
        f" {'met' if e2e_rate >= 100_000 else 'NOT met'}",
        f"- features of {bars:,} closed bars ({WINDOW}-bar windows):"
        f" **{ours * 1e6 / bars:.1f} µs/bar** vs TA-Lib called directly on the same windows"
        f" {reference * 1e6 / bars:.1f} µs/bar → **{ratio:.2f}×**"
        f" (goal ≤ 1.5×: {'met' if ratio <= 1.5 else 'NOT met'})",
    ]
    for line in lines:
        print(line)
    benchlib.write_section(SECTION, args.command, lines)
    benchlib.update_summary(figures(e2e_rate, copy_rate, ours, reference, bars, args.command))


def figures(e2e_rate: float, copy_rate: float, ours: float, reference: float, bars: int, command: str) -> list[Figure]:
    return [
        Figure(
            "ingest ticks/s end to end",
            f"{e2e_rate:,.0f} ticks/s",
            f"bare COPY {copy_rate:,.0f} ticks/s",
            f"{e2e_rate / copy_rate:.2f}×",
            "≥ 100,000 ticks/s",
            e2e_rate >= 100_000,
            command,
        ),
        Figure(
            "indicator time vs TA-Lib",
            f"{ours * 1e6 / bars:.1f} µs/bar",
            f"TA-Lib direct {reference * 1e6 / bars:.1f} µs/bar",
            f"{ours / reference:.2f}×",
            "≤ 1.5×",
            ours / reference <= 1.5,
            command,
        ),
    ]


if __name__ == "__main__":
    asyncio.run(main())
