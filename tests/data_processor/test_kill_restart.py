"""Killing the processor mid-stream and restarting it loses nothing and duplicates nothing.

Real RabbitMQ and PostgreSQL; the processor runs as its own OS process (the console script)
and is killed with SIGKILL while it works through the queue.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import aio_pika
import pytest
from sqlalchemy import func, select

from common.bus.rabbitmq import RabbitMQBus
from common.contracts import Envelope, Tick
from common.db import BarRecord, ProcessedMessage, TickRecord, create_engine, migrate
from common.db.processing import QuarantinedRecord
from data_processor.aggregation import minute_bars

SYMBOLS = ("005930", "000660", "035420", "051910")
BATCHES = 80
TICKS_PER_BATCH = 2_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_batches(dp: SimpleNamespace) -> list[tuple[str, Envelope]]:
    """Tick batches per symbol; every 97th tick has zero volume (quarantined), the last batch is sent twice
    and one batch overlaps its predecessor, as a reconnecting collector would."""
    messages: list[tuple[str, Envelope]] = []
    start = dp.at(9, 0)
    for b in range(BATCHES):
        symbol = SYMBOLS[b % len(SYMBOLS)]
        offset = (b // len(SYMBOLS)) * TICKS_PER_BATCH
        ticks = [
            Tick(
                symbol=symbol,
                ts=start + timedelta(milliseconds=250 * (offset + i)),
                seq=0,
                price=50_000 + ((offset + i) % 40) * 50,
                volume=0 if (offset + i) % 97 == 0 else 1 + (offset + i) % 9,
            )
            for i in range(TICKS_PER_BATCH)
        ]
        messages.append((f"tick.{symbol}", dp.tick_envelope(ticks)))
    overlap = messages[0][1].payload.ticks[-100:] + messages[4][1].payload.ticks[:100]  # both 005930
    messages.append(("tick.mixed", dp.tick_envelope(overlap)))
    messages.append(messages[-1])  # a redelivered duplicate (same message id)
    return messages


@pytest.fixture
def names() -> SimpleNamespace:
    suffix = uuid.uuid4().hex[:10]
    return SimpleNamespace(exchange=f"test-dp-{suffix}", ticks=f"test-dp-{suffix}.ticks", bars=f"test-dp-{suffix}.bars")


def start_processor(pg_url: str, amqp_url: str, names: SimpleNamespace) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "TRADEBOT_DATABASE_URL": pg_url,
        "TRADEBOT_AMQP_URL": amqp_url,
        "TRADEBOT_BUS_EXCHANGE": names.exchange,
        "TRADEBOT_BUS_PREFETCH": "8",
        "TRADEBOT_LOG_LEVEL": "WARNING",
        "DATA_PROCESSOR_PORT": str(free_port()),
        "DATA_PROCESSOR_TICK_QUEUE": names.ticks,
        "DATA_PROCESSOR_BAR_QUEUE": names.bars,
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "tradebot-data-processor")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def scalar(engine: object, statement: object) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(statement)).scalar_one())


async def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    pg_url: str, amqp_url: str, names: SimpleNamespace, dp: SimpleNamespace
) -> None:
    await migrate(pg_url)
    messages = make_batches(dp)
    distinct_messages = len({e.message_id for _, e in messages})
    all_ticks = {(t.symbol, t.ts, t.seq): t for _, e in messages for t in e.payload.ticks}
    valid = [t for t in all_ticks.values() if t.volume > 0]
    bad_positions = {(e.message_id, i) for _, e in messages for i, t in enumerate(e.payload.ticks) if t.volume == 0}

    publisher = RabbitMQBus(amqp_url, exchange=names.exchange)
    await publisher.start()
    engine = create_engine(pg_url)
    processes: list[subprocess.Popen[str]] = []
    try:
        await publisher.declare(names.ticks, ["tick.#"])
        await publisher.publish_batch(messages)

        first = start_processor(pg_url, amqp_url, names)
        processes.append(first)
        deadline = time.monotonic() + 60
        while await scalar(engine, select(func.count()).select_from(TickRecord)) == 0:
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the processor stored nothing in 60 s"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        stored_at_kill = await scalar(engine, select(func.count()).select_from(TickRecord))
        assert 0 < stored_at_kill < len(valid), "the kill must land mid-stream"

        second = start_processor(pg_url, amqp_url, names)
        processes.append(second)
        processed = select(func.count()).select_from(ProcessedMessage).where(ProcessedMessage.consumer == names.ticks)
        deadline = time.monotonic() + 120
        while await scalar(engine, processed) < distinct_messages:
            assert second.poll() is None, second.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the restarted processor did not finish in 120 s"
            await asyncio.sleep(0.1)
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

        assert await scalar(engine, select(func.count()).select_from(TickRecord)) == len(valid)
        async with engine.connect() as conn:
            quarantined = {
                (m, p)
                for m, p in (await conn.execute(select(QuarantinedRecord.message_id, QuarantinedRecord.position))).all()
            }
            stored_bars = {
                (r.symbol, r.ts): (r.open, r.high, r.low, r.close, r.volume, r.value)
                for r in (await conn.execute(select(BarRecord).where(BarRecord.timeframe == "1m"))).all()
            }
        assert quarantined == bad_positions
        expected = minute_bars((t.symbol, t.ts, t.seq, t.price, t.volume) for t in valid)
        assert stored_bars == {(b.symbol, b.ts): (b.open, b.high, b.low, b.close, b.volume, b.value) for b in expected}
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        await publisher.close()
        await engine.dispose()
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        for queue in (names.ticks, names.bars):
            for suffix in ("", ".dead", ".retry"):
                await channel.queue_delete(f"{queue}{suffix}")
        await channel.exchange_delete(names.exchange)
        await connection.close()
