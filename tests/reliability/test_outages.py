"""Outages of the broker and of the database while ticks flow: nothing lost, nothing stored twice.

The data-processor runs as its own OS process (``common.cluster``) against a private RabbitMQ
node and a private PostgreSQL cluster (``conftest.py``), which these tests stop and start. The
200,000 ticks are published the way the data-collector publishes them: batches of one symbol,
persistent, with publisher confirms — and the publisher carries on through the outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from common.bus.rabbitmq import RabbitMQBus
from common.clock import kst_datetime
from common.cluster import PROCESSOR, Cluster, ClusterConfig
from common.contracts import Envelope, MarketTickBatchV1, Tick
from common.db import BarRecord, ProcessedMessage, create_engine, is_unreachable, migrate
from data_processor.aggregation import minute_bars
from tests.reliability.servers import PrivatePostgres, PrivateRabbitMQ

TOTAL_TICKS = 200_000
SYMBOLS = tuple(f"{n:06d}" for n in range(5930, 5950))
TICKS_PER_BATCH = 2_000
# The stream: the first 120,000 ticks at once (a backlog for the processor), the rest at ten
# batches a second, so an outage lands while the publisher is still at work.
BURST_BATCHES = 60
BATCHES_PER_SECOND = 10.0
TICK_QUEUE = "data-processor.ticks"  # the processor's queue (and its inbox consumer name)
POSTGRES_OUTAGE_SECONDS = 20.0
PROCESSOR_MEMBER = PROCESSOR.name


@functools.cache
def tick_stream() -> tuple[tuple[str, Envelope], ...]:
    """``TOTAL_TICKS`` distinct valid ticks of 20 symbols (four prints a second each), in batches of
    one symbol interleaved as a live feed sends them."""
    start = kst_datetime(date(2024, 1, 2), dtime(9, 0))
    per_symbol = TOTAL_TICKS // len(SYMBOLS)
    step = timedelta(milliseconds=250)
    messages: list[tuple[str, Envelope]] = []
    for index, symbol in enumerate(SYMBOLS):
        ticks = [
            Tick(
                symbol=symbol, ts=start + step * i, seq=i, price=50_000 + (i * 7 + index) % 200 * 50, volume=1 + i % 50
            )
            for i in range(per_symbol)
        ]
        messages.extend(
            (
                f"tick.{symbol}",
                Envelope(producer="reliability", payload=MarketTickBatchV1(ticks=ticks[s : s + TICKS_PER_BATCH])),
            )
            for s in range(0, per_symbol, TICKS_PER_BATCH)
        )
    messages.sort(key=lambda m: (batch_of(m[1])[0].ts, m[0]))
    return tuple(messages)


def batch_of(envelope: Envelope) -> list[Tick]:
    assert isinstance(envelope.payload, MarketTickBatchV1)
    return envelope.payload.ticks


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1) -> None:
    """Await ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Stream:
    """The publisher's side: how far it got, and its task."""

    published: int = 0
    task: asyncio.Task[None] | None = None

    async def run(self, bus: RabbitMQBus, messages: tuple[tuple[str, Envelope], ...]) -> None:
        for index, message in enumerate(messages):
            # Returns once the broker confirmed it; across a broker restart the bus republishes
            # what was left unconfirmed (a duplicate at worst, which the consumer must absorb).
            await bus.publish_batch([message])
            self.published += 1
            if index >= BURST_BATCHES:
                await asyncio.sleep(1 / BATCHES_PER_SECOND)

    @property
    def published_ticks(self) -> int:
        return self.published * TICKS_PER_BATCH


@dataclass
class Pipeline:
    """The processor process, the test's publisher and a view of the database and the queues."""

    cluster: Cluster
    bus: RabbitMQBus
    engine: AsyncEngine
    amqp_url: str
    queue: str  # the tick queue's name on the broker (with the cluster's prefix)
    started: float = field(default_factory=time.monotonic)

    def mark(self, what: str) -> None:
        """A milestone on the test's timeline (shown with the output of a failing test, or with -s)."""
        print(f"[{time.monotonic() - self.started:6.1f} s] {what}")

    @property
    def processor_url(self) -> str:
        return self.cluster.url(PROCESSOR_MEMBER)

    def processor_alive(self) -> bool:
        return self.cluster.members[PROCESSOR_MEMBER].running

    def log_tail(self) -> str:
        return self.cluster.log_tail(PROCESSOR_MEMBER, 40)

    async def scalar(self, statement: Any) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(statement)).scalar_one())

    async def stored_ticks(self) -> int:
        return await self.scalar(text("SELECT count(*) FROM ticks"))

    async def applied_batches(self) -> int:
        statement = select(func.count()).select_from(ProcessedMessage).where(ProcessedMessage.consumer == TICK_QUEUE)
        return await self.scalar(statement)

    async def applied_since(self, instant: datetime) -> int:
        statement = (
            select(func.count())
            .select_from(ProcessedMessage)
            .where(ProcessedMessage.consumer == TICK_QUEUE, ProcessedMessage.processed_at >= instant)
        )
        return await self.scalar(statement)

    async def queued(self, suffix: str = "") -> int:
        """Messages waiting in the tick queue (``suffix``: ``.dead`` for its dead letters)."""
        connection = await aio_pika.connect(self.amqp_url, timeout=10)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue(f"{self.queue}{suffix}", passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await connection.close()

    async def duplicates_skipped(self) -> int:
        """Redelivered batches the processor's inbox recognised as already applied (its metric)."""
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{self.processor_url}/metrics", timeout=5)).text
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in metrics.splitlines()
            if line.startswith("tradebot_bus_duplicates_skipped_total{")
        )

    async def ready(self) -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.processor_url}/readyz", timeout=5)).status_code

    async def wait_until_all_applied(self, timeout: float) -> None:
        """Until every batch is applied and the queue is empty (redelivered copies skipped too)."""
        expected = len({e.message_id for _, e in tick_stream()})

        async def done() -> bool:
            assert self.processor_alive(), f"the data-processor died:\n{self.log_tail()}"
            return await self.applied_batches() >= expected and await self.queued() == 0

        await eventually(done, timeout, f"the processor to apply all {expected} batches", interval=0.25)

    async def assert_every_tick_stored_once(self) -> None:
        """The database holds exactly the published ticks and the minute bars they make."""
        messages = tick_stream()
        ticks = [t for _, e in messages for t in batch_of(e)]
        async with self.engine.connect() as conn:
            total, distinct = (
                await conn.execute(text("SELECT count(*), count(DISTINCT (symbol, ts, seq)) FROM ticks"))
            ).one()
            per_symbol = {
                row.symbol: (row.n, row.first, row.last)
                for row in await conn.execute(
                    text("SELECT symbol, count(*) AS n, min(seq) AS first, max(seq) AS last FROM ticks GROUP BY symbol")
                )
            }
            bars = {
                (r.symbol, r.ts): (r.open, r.high, r.low, r.close, r.volume, r.value)
                for r in await conn.execute(select(BarRecord).where(BarRecord.timeframe == "1m"))
            }
        assert (total, distinct) == (TOTAL_TICKS, TOTAL_TICKS)
        per = TOTAL_TICKS // len(SYMBOLS)
        assert per_symbol == {s: (per, 0, per - 1) for s in SYMBOLS}
        # Bars are aggregated from each applied batch: a batch applied twice would show here.
        expected = minute_bars((t.symbol, t.ts, t.seq, t.price, t.volume) for t in ticks)
        assert bars == {(b.symbol, b.ts): (b.open, b.high, b.low, b.close, b.volume, b.value) for b in expected}
        assert await self.applied_batches() == len(messages)
        assert await self.queued(".dead") == 0, "ticks were dead-lettered"


@contextlib.asynccontextmanager
async def pipeline(database_url: str, rabbitmq: PrivateRabbitMQ, work_dir: Path) -> AsyncIterator[Pipeline]:
    """The data-processor process on the private servers, and a publisher for the tick stream."""
    began = time.monotonic()
    await migrate(database_url)
    exchange = f"reliability-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(
        ClusterConfig(
            database_url=database_url,
            amqp_url=rabbitmq.url,
            work_dir=work_dir,
            exchange=exchange,
            free_ports=True,
            stop_timeout=15.0,
        )
    )
    # The publisher may outlive a broker restart by a wide margin before giving up.
    bus = RabbitMQBus(rabbitmq.url, exchange=exchange, queue_prefix=f"{exchange}.", publish_timeout=90.0)
    engine = create_engine(database_url)
    await bus.start()
    try:
        await bus.declare(TICK_QUEUE, ["tick.#"])
        cluster.start_member(PROCESSOR_MEMBER)  # from this thread: the child dies with it
        await asyncio.to_thread(cluster.wait_ready, [PROCESSOR_MEMBER], timeout=90)
        line = Pipeline(cluster, bus, engine, rabbitmq.url, queue=f"{exchange}.{TICK_QUEUE}", started=began)
        line.mark("data-processor ready")
        yield line
    finally:
        await asyncio.to_thread(cluster.stop)
        await bus.close()
        await engine.dispose()
        if rabbitmq.running:
            with contextlib.suppress(Exception):
                await delete_queues(rabbitmq.url, exchange)


async def delete_queues(amqp_url: str, exchange: str) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        for queue in ("data-processor.ticks", "data-processor.bars", "data-processor.quotes"):
            for suffix in ("", ".dead", ".retry"):
                await channel.queue_delete(f"{exchange}.{queue}{suffix}")
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def start_stream(line: Pipeline) -> Stream:
    """Start publishing; return once the processor is storing ticks: the outage comes mid-stream."""
    stream = Stream()
    task = stream.task = asyncio.create_task(stream.run(line.bus, tick_stream()), name="tick-stream")

    async def storing() -> bool:
        assert not task.done() or task.exception() is None, task.exception()
        return await line.stored_ticks() >= TOTAL_TICKS // 10

    await eventually(storing, 60, "the processor storing ticks")
    return stream


async def finish(stream: Stream, timeout: float) -> None:
    assert stream.task is not None
    await asyncio.wait_for(stream.task, timeout)
    assert stream.published == len(tick_stream())


@pytest.mark.integration
async def test_rabbitmq_restart_mid_stream_loses_and_duplicates_no_tick(
    private_database_url: str, live_rabbitmq: PrivateRabbitMQ, tmp_path: Path
) -> None:
    async with pipeline(private_database_url, live_rabbitmq, tmp_path / "cluster") as line:
        stream = await start_stream(line)
        # The processor is frozen while the broker stops, so the broker goes down with deliveries
        # unacknowledged and a backlog queued, however fast this machine consumes.
        line.cluster.signal_member(PROCESSOR_MEMBER, signal.SIGSTOP)
        try:
            stored_at_stop, published_at_stop = await line.stored_ticks(), stream.published_ticks
            await asyncio.to_thread(live_rabbitmq.stop)
        finally:
            line.cluster.signal_member(PROCESSOR_MEMBER, signal.SIGCONT)
        line.mark(f"RabbitMQ stopped with {published_at_stop} ticks published, {stored_at_stop} stored")
        assert stored_at_stop < published_at_stop < TOTAL_TICKS, "the broker must stop mid-stream, with a backlog"
        await asyncio.to_thread(live_rabbitmq.start)
        line.mark("RabbitMQ started again")

        await finish(stream, timeout=120)
        line.mark("stream published")
        await line.wait_until_all_applied(timeout=120)
        line.mark("every batch applied")
        await line.assert_every_tick_stored_once()
        line.mark(f"{await line.duplicates_skipped()} redelivered batches recognised and skipped")
        assert line.processor_alive(), "the processor must ride out the restart, not exit"
        assert await line.ready() == 200


@pytest.mark.integration
async def test_postgresql_down_20_s_holds_ticks_until_it_is_back(
    private_database_url: str, live_postgres: PrivatePostgres, live_rabbitmq: PrivateRabbitMQ, tmp_path: Path
) -> None:
    async with pipeline(private_database_url, live_rabbitmq, tmp_path / "cluster") as line:
        stream = await start_stream(line)
        # Close the test's own pooled connections first: they would only see the server vanish.
        await line.engine.dispose()

        await asyncio.to_thread(live_postgres.stop)
        published_at_stop = stream.published
        line.mark(f"PostgreSQL stopped with {published_at_stop * TICKS_PER_BATCH} ticks published")
        assert published_at_stop < len(tick_stream()), "the database must go while the stream is still flowing"
        deadline = time.monotonic() + POSTGRES_OUTAGE_SECONDS
        readiness: set[int] = set()
        # For the whole outage: the processor stays up, says it is not ready, dead-letters nothing,
        # and the ticks published meanwhile wait in RabbitMQ.
        while time.monotonic() < deadline:
            assert line.processor_alive(), f"the data-processor died during the outage:\n{line.log_tail()}"
            assert await line.queued(".dead") == 0, f"ticks dead-lettered during the outage:\n{line.log_tail()}"
            readiness.add(await line.ready())
            await asyncio.sleep(0.5)
        assert readiness == {503}
        assert stream.task is not None and stream.task.done(), (
            "the stream goes on into RabbitMQ while the database is down"
        )
        back_at = datetime.now(UTC)
        await asyncio.to_thread(live_postgres.start)
        line.mark("PostgreSQL started again")

        await finish(stream, timeout=10)
        await line.wait_until_all_applied(timeout=120)
        line.mark("every batch applied")
        await line.assert_every_tick_stored_once()
        assert await line.applied_since(back_at) > 0, "some batches must have waited for the database"
        assert line.processor_alive()
        assert await line.ready() == 200


class _ServerStartingUp(Exception):
    sqlstate = "57P03"  # what asyncpg raises while PostgreSQL is starting up


class _UniqueViolation(Exception):
    sqlstate = "23505"


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (DBAPIError("SELECT 1", {}, Exception("connection is closed"), connection_invalidated=True), True),
        (DBAPIError("SELECT 1", {}, _ServerStartingUp("the database system is starting up")), True),
        (IntegrityError("INSERT …", {}, _UniqueViolation("duplicate key value")), False),
        (ValueError("a tick without a price"), False),
    ],
)
def test_only_errors_of_reaching_the_database_count_as_an_outage(error: BaseException, unreachable: bool) -> None:
    """What the processor holds messages for (the outage above) and what it lets the bus retry."""
    assert is_unreachable(error) is unreachable
