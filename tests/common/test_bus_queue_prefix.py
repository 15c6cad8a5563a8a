"""Queues are per RabbitMQ vhost: a queue prefix keeps two deployments sharing a broker apart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aio_pika

from common.bus import create_bus
from common.bus.rabbitmq import RabbitMQBus
from common.contracts import Envelope, MarketTickBatchV1, Tick
from common.settings import RuntimeSettings


def tick(seq: int) -> Envelope:
    payload = MarketTickBatchV1(
        ticks=[Tick(symbol="005930", ts=datetime(2024, 1, 2, tzinfo=UTC), seq=seq, price=1000, volume=1)]
    )
    return Envelope(producer="test", payload=payload)


async def test_same_queue_name_on_two_prefixed_deployments_does_not_mix_their_messages(amqp_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    buses = [
        RabbitMQBus(amqp_url, exchange=f"test-prefix-{run}-{side}", queue_prefix=f"test-prefix-{run}-{side}.")
        for side in ("a", "b")
    ]
    received: dict[int, list[int]] = {0: [], 1: []}
    try:
        for index, bus in enumerate(buses):
            await bus.start()

            async def handle(envelope: Envelope, index: int = index) -> None:
                assert isinstance(envelope.payload, MarketTickBatchV1)
                received[index].append(envelope.payload.ticks[0].seq)

            await bus.subscribe("data-processor.ticks", ["tick.#"], handle)
        await buses[0].publish("tick.005930", tick(1))
        await buses[1].publish("tick.005930", tick(2))
        for _ in range(200):
            if received[0] and received[1]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert received == {0: [1], 1: [2]}
    finally:
        for bus in buses:
            await bus.close()
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        for side in ("a", "b"):
            for suffix in ("", ".dead", ".retry"):
                await channel.queue_delete(f"test-prefix-{run}-{side}.data-processor.ticks{suffix}")
            await channel.exchange_delete(f"test-prefix-{run}-{side}")
        await connection.close()


def test_runtime_settings_pass_the_queue_prefix_to_the_bus() -> None:
    settings = RuntimeSettings(amqp_url="amqp://guest:guest@127.0.0.1:5672/", bus_queue_prefix="staging.")
    bus = create_bus(settings)
    assert isinstance(bus, RabbitMQBus)
    assert bus._queue_name("inferencer.features") == "staging.inferencer.features"
