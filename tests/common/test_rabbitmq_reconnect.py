"""The RabbitMQ adapter survives the broker closing its connection: it reconnects and carries on."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid

import aio_pika

from common.bus.rabbitmq import RabbitMQBus
from common.contracts import Envelope
from tests.common.test_bus_conformance import eventually, tick_envelope
from tests.conftest import unavailable


def close_connections_named(name: str) -> int:
    """Close every broker connection whose client named itself ``name``; how many were closed."""
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl is needed to close a connection from the broker side")
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    closed = 0
    for line in listing.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if pid.startswith("<") and f'{{"connection_name","{name}"}}' in properties:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, "test: forced close"],
                capture_output=True, timeout=30, check=True,
            )
            closed += 1
    return closed


async def test_consumer_and_publisher_recover_after_the_broker_drops_the_connection(amqp_url: str) -> None:
    exchange = f"test-{uuid.uuid4().hex[:10]}"
    queue = f"{exchange}.reconnect"
    name = f"tradebot-test-{uuid.uuid4().hex[:8]}"
    bus = RabbitMQBus(amqp_url, exchange=exchange, retry_delay=0.05, connection_name=name)
    await bus.start()
    received: list[uuid.UUID] = []

    async def handler(envelope: Envelope) -> None:
        received.append(envelope.message_id)

    try:
        await bus.subscribe(queue, ["tick.#"], handler)
        before = tick_envelope(seq=1)
        await bus.publish("tick.005930", before)
        await eventually(lambda: received == [before.message_id])

        assert await asyncio.to_thread(close_connections_named, name) == 1
        await eventually(lambda: not bus._connection.connected.is_set(), timeout=10)  # type: ignore[union-attr]
        await eventually(lambda: bus._connection.connected.is_set(), timeout=30)  # type: ignore[union-attr]

        after = tick_envelope(seq=2)
        await bus.publish("tick.005930", after)
        await eventually(lambda: after.message_id in received, timeout=30)
        assert await bus.healthy()
        assert received.count(after.message_id) == 1
    finally:
        await bus.close()
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        for suffix in ("", ".dead", ".retry"):
            await channel.queue_delete(f"{queue}{suffix}")
        await channel.exchange_delete(exchange)
        await connection.close()
