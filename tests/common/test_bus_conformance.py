"""One conformance suite for every MessageBus adapter: in-memory and real RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import pytest

from common.bus.memory import InMemoryBus
from common.bus.rabbitmq import RabbitMQBus
from common.contracts import Envelope, MarketTickBatchV1, Tick

BusFactory = Callable[..., Awaitable[InMemoryBus | RabbitMQBus]]


def tick_envelope(symbol: str = "005930", seq: int = 0) -> Envelope:
    tick = Tick(symbol=symbol, ts=datetime(2024, 1, 2, 0, 0, tzinfo=UTC), seq=seq, price=71900, volume=3)
    return Envelope(producer="test", correlation_id="corr-1", payload=MarketTickBatchV1(ticks=[tick]))


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.integration)])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Builds started buses of one adapter; all share one exchange and are closed afterwards."""
    created: list[InMemoryBus | RabbitMQBus] = []
    exchange = f"test-{uuid.uuid4().hex[:10]}"
    queues: set[str] = set()
    shared_memory: list[InMemoryBus] = []
    url = request.getfixturevalue("amqp_url") if request.param == "rabbitmq" else ""

    async def factory(**options: object) -> InMemoryBus | RabbitMQBus:
        options.setdefault("max_attempts", 3)
        options.setdefault("retry_delay", 0.05)
        bus: InMemoryBus | RabbitMQBus
        if request.param == "memory":
            # One process, one bus: "another instance" is the same in-memory broker.
            if shared_memory:
                return shared_memory[0]
            bus = InMemoryBus(**options)  # type: ignore[arg-type]
            shared_memory.append(bus)
        else:
            bus = RabbitMQBus(url, exchange=exchange, **options)  # type: ignore[arg-type]
        await bus.start()
        created.append(bus)
        return bus

    factory.queue = lambda name: queues.add(name) or f"{exchange}.{name}"  # type: ignore[attr-defined]
    yield factory
    for bus in created:
        await bus.close()
    if request.param == "rabbitmq":
        connection = await aio_pika.connect(url)
        channel = await connection.channel()
        for name in queues:
            for suffix in ("", ".dead", ".retry"):
                await channel.queue_delete(f"{exchange}.{name}{suffix}")
        await channel.exchange_delete(exchange)
        await connection.close()


def qname(factory: BusFactory, name: str) -> str:
    return factory.queue(name)  # type: ignore[attr-defined,no-any-return]


async def test_published_message_reaches_subscriber_intact(make_bus: BusFactory) -> None:
    bus = await make_bus()
    received: list[Envelope] = []

    async def handler(envelope: Envelope) -> None:
        received.append(envelope)

    await bus.subscribe(qname(make_bus, "intact"), ["tick.*"], handler)
    sent = tick_envelope()
    await bus.publish("tick.005930", sent)
    await eventually(lambda: len(received) == 1)
    assert received[0] == sent


async def test_topic_patterns_route_like_rabbitmq(make_bus: BusFactory) -> None:
    bus = await make_bus()
    seen: dict[str, list[str]] = {"one": [], "many": []}

    def collector(name: str) -> Callable[[Envelope], Awaitable[None]]:
        async def handler(envelope: Envelope) -> None:
            seen[name].append(envelope.payload.ticks[0].symbol)  # type: ignore[union-attr]

        return handler

    await bus.subscribe(qname(make_bus, "one"), ["bar.*.005930"], collector("one"))
    await bus.subscribe(qname(make_bus, "many"), ["bar.#"], collector("many"))
    await bus.publish("bar.1m.005930", tick_envelope("005930"))
    await bus.publish("bar.1d.000660", tick_envelope("000660"))
    await bus.publish("tick.005930", tick_envelope("035420"))
    await eventually(lambda: len(seen["many"]) == 2 and len(seen["one"]) == 1)
    await asyncio.sleep(0.2)
    assert sorted(seen["many"]) == ["000660", "005930"]
    assert seen["one"] == ["005930"]


async def test_batch_publish_delivers_every_message(make_bus: BusFactory) -> None:
    bus = await make_bus()
    received: set[uuid.UUID] = set()

    async def handler(envelope: Envelope) -> None:
        received.add(envelope.message_id)

    await bus.subscribe(qname(make_bus, "batch"), ["tick.#"], handler)
    batch = [("tick.005930", tick_envelope(seq=i)) for i in range(500)]
    await bus.publish_batch(batch)
    await eventually(lambda: len(received) == 500)
    assert received == {envelope.message_id for _, envelope in batch}


async def test_declared_queue_keeps_messages_until_a_consumer_comes(make_bus: BusFactory) -> None:
    bus = await make_bus()
    queue = qname(make_bus, "waiting")
    await bus.declare(queue, ["tick.#"])
    sent = [tick_envelope(seq=i) for i in range(5)]
    await bus.publish_batch([("tick.005930", e) for e in sent])
    received: list[Envelope] = []

    async def handler(envelope: Envelope) -> None:
        received.append(envelope)

    await bus.subscribe(queue, ["tick.#"], handler)
    await eventually(lambda: len(received) == 5)
    assert {e.message_id for e in received} == {e.message_id for e in sent}


async def test_consumers_of_one_queue_share_it_and_other_queues_get_copies(make_bus: BusFactory) -> None:
    first, second = await make_bus(), await make_bus()
    shared: list[uuid.UUID] = []
    copy: list[uuid.UUID] = []

    async def on_shared(envelope: Envelope) -> None:
        shared.append(envelope.message_id)

    async def on_copy(envelope: Envelope) -> None:
        copy.append(envelope.message_id)

    queue = qname(make_bus, "shared")
    await first.subscribe(queue, ["tick.#"], on_shared)
    await second.subscribe(queue, ["tick.#"], on_shared)
    await first.subscribe(qname(make_bus, "copy"), ["tick.#"], on_copy)
    await first.publish_batch([("tick.005930", tick_envelope(seq=i)) for i in range(50)])
    await eventually(lambda: len(shared) == 50 and len(copy) == 50)
    await asyncio.sleep(0.2)
    assert len(set(shared)) == 50 and len(shared) == 50
    assert set(copy) == set(shared)


async def test_failing_handler_is_retried_then_dead_lettered_with_reason(make_bus: BusFactory) -> None:
    bus = await make_bus(max_attempts=3)
    attempts: list[uuid.UUID] = []

    async def handler(envelope: Envelope) -> None:
        attempts.append(envelope.message_id)
        raise RuntimeError("database says no")

    queue = qname(make_bus, "failing")
    await bus.subscribe(queue, ["tick.#"], handler)
    sent = tick_envelope()
    await bus.publish("tick.005930", sent)
    await eventually(lambda: len(attempts) == 3)
    dead: list = []

    async def collect() -> bool:
        dead.extend(await bus.take_dead_letters(queue))
        return bool(dead)

    deadline = asyncio.get_running_loop().time() + 10
    while not await collect():
        assert asyncio.get_running_loop().time() < deadline, "nothing was dead-lettered"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert attempts == [sent.message_id] * 3
    assert len(dead) == 1
    assert dead[0].reason == "RuntimeError: database says no"
    assert dead[0].attempts == 3
    assert dead[0].routing_key == "tick.005930"
    assert Envelope.model_validate_json(dead[0].body) == sent


async def test_handler_that_recovers_processes_the_message_once(make_bus: BusFactory) -> None:
    bus = await make_bus(max_attempts=3)
    calls: list[int] = []
    done: list[uuid.UUID] = []

    async def handler(envelope: Envelope) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("transient")
        done.append(envelope.message_id)

    queue = qname(make_bus, "recovering")
    await bus.subscribe(queue, ["tick.#"], handler)
    await bus.publish("tick.005930", tick_envelope())
    await eventually(lambda: len(done) == 1)
    await asyncio.sleep(0.3)
    assert len(calls) == 2 and len(done) == 1
    assert await bus.take_dead_letters(queue) == []


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        (b"not json at all", "invalid message"),
        (b'{"producer": "x", "payload": {"kind": "market.tick.v9"}}', "invalid message"),
        (b'{"producer": "x", "payload": {"kind": "market.tick_batch.v1", "ticks": [], "extra": 1}}', "invalid message"),
    ],
    ids=["garbage", "unknown-version", "breaks-contract"],
)
async def test_malformed_message_is_dead_lettered_without_calling_handler(
    make_bus: BusFactory, body: bytes, reason_part: str
) -> None:
    bus = await make_bus()
    called: list[Envelope] = []

    async def handler(envelope: Envelope) -> None:
        called.append(envelope)

    queue = qname(make_bus, "malformed")
    await bus.subscribe(queue, ["tick.#"], handler)
    publish_raw = bus.publish_raw
    result = publish_raw("tick.005930", body)
    if asyncio.iscoroutine(result):
        await result
    dead: list = []
    deadline = asyncio.get_running_loop().time() + 10
    while not dead:
        dead = await bus.take_dead_letters(queue)
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert called == []
    assert reason_part in dead[0].reason
    assert dead[0].body == body


@dataclass(frozen=True)
class Decoded:
    """What a subscription's own decoder makes of a body (here: the envelope's identity and size)."""

    message_id: uuid.UUID
    correlation_id: str | None
    kind: str
    size: int


def decode_with_size(body: bytes) -> Decoded:
    envelope = Envelope.model_validate_json(body)
    return Decoded(envelope.message_id, envelope.correlation_id, envelope.kind, len(body))


async def test_a_subscription_with_a_decoder_hands_its_result_to_the_handler(make_bus: BusFactory) -> None:
    bus = await make_bus()
    received: list[Decoded] = []

    async def handler(decoded: Decoded) -> None:
        received.append(decoded)

    queue = qname(make_bus, "decoded")
    await bus.subscribe(queue, ["tick.#"], handler, decode=decode_with_size)
    envelope = tick_envelope()
    await bus.publish("tick.005930", envelope)
    await eventually(lambda: len(received) == 1)
    assert received[0] == Decoded(
        envelope.message_id, "corr-1", "market.tick_batch.v1", len(envelope.model_dump_json().encode())
    )

    result = bus.publish_raw("tick.005930", b"{}")  # the decoder refuses it: dead-lettered, handler not called
    if asyncio.iscoroutine(result):
        await result
    dead: list = []
    while not dead:
        dead = await bus.take_dead_letters(queue)
        await asyncio.sleep(0.05)
    assert dead[0].body == b"{}" and "invalid message" in dead[0].reason
    assert len(received) == 1


async def test_a_subscriptions_prefetch_bounds_its_messages_in_flight(make_bus: BusFactory) -> None:
    bus = await make_bus(prefetch=8)
    in_flight: list[int] = []
    peak = 0
    done: list[uuid.UUID] = []

    async def slow(envelope: Envelope) -> None:
        nonlocal peak
        in_flight.append(1)
        peak = max(peak, len(in_flight))
        await asyncio.sleep(0.05)
        in_flight.pop()
        done.append(envelope.message_id)

    await bus.subscribe(qname(make_bus, "prefetch"), ["tick.#"], slow, prefetch=2)
    await bus.publish_batch([("tick.005930", tick_envelope(seq=i)) for i in range(8)])
    await eventually(lambda: len(done) == 8)
    assert peak == 2


async def test_close_waits_for_handler_in_flight(make_bus: BusFactory) -> None:
    bus = await make_bus()
    started = asyncio.Event()
    finished: list[bool] = []

    async def slow(envelope: Envelope) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(True)

    await bus.subscribe(qname(make_bus, "slow"), ["tick.#"], slow)
    await bus.publish("tick.005930", tick_envelope())
    await asyncio.wait_for(started.wait(), 10)
    await bus.close()
    assert finished == [True]
    assert not await bus.healthy()


async def test_healthy_after_start(make_bus: BusFactory) -> None:
    bus = await make_bus()
    assert await bus.healthy()


async def test_metrics_count_published_consumed_and_dead_lettered_messages(make_bus: BusFactory) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    bus = await make_bus(max_attempts=1)
    good, bad = qname(make_bus, "metrics-good"), qname(make_bus, "metrics-bad")
    published = sample("tradebot_bus_messages_published_total", kind="market.tick_batch.v1")

    async def fail(envelope: Envelope) -> None:
        raise RuntimeError("no")

    handled: list[Envelope] = []

    async def ok(envelope: Envelope) -> None:
        handled.append(envelope)

    await bus.subscribe(good, ["tick.#"], ok)
    await bus.subscribe(bad, ["tick.#"], fail)
    await bus.publish_batch([("tick.005930", tick_envelope(seq=1)), ("tick.005930", tick_envelope(seq=2))])
    await eventually(lambda: sample("tradebot_bus_messages_dead_lettered_total", queue=bad) == 2 and len(handled) == 2)
    assert sample("tradebot_bus_messages_published_total", kind="market.tick_batch.v1") == published + 2
    assert sample("tradebot_bus_messages_consumed_total", queue=good, outcome="ok") == 2
    assert sample("tradebot_bus_messages_consumed_total", queue=bad, outcome="dead_lettered") == 2
    assert sample("tradebot_bus_handler_seconds_count", queue=good) == 2


async def test_transient_queues_give_each_consumer_its_own_copy_and_go_away_with_it(
    make_bus: BusFactory, request: pytest.FixtureRequest
) -> None:
    first, second = await make_bus(), await make_bus()
    heard: dict[str, list[uuid.UUID]] = {"first": [], "second": []}

    def collector(name: str) -> Callable[[Envelope], Awaitable[None]]:
        async def handler(envelope: Envelope) -> None:
            heard[name].append(envelope.message_id)

        return handler

    own_first, own_second = qname(make_bus, "own-first"), qname(make_bus, "own-second")
    await first.subscribe(own_first, ["model.promoted"], collector("first"), transient=True)
    await second.subscribe(own_second, ["model.promoted"], collector("second"), transient=True)
    sent = tick_envelope()
    await first.publish("model.promoted", sent)
    await eventually(lambda: heard["first"] == [sent.message_id] and heard["second"] == [sent.message_id])
    if isinstance(first, RabbitMQBus):
        await first.close()
        connection = await aio_pika.connect(request.getfixturevalue("amqp_url"))
        try:
            channel = await connection.channel()
            with pytest.raises(aio_pika.exceptions.ChannelClosed):
                await channel.declare_queue(own_first, passive=True)
        finally:
            await connection.close()


async def test_dead_letters_of_a_transient_queue_can_be_taken(make_bus: BusFactory) -> None:
    bus = await make_bus(max_attempts=1)

    async def refuse(envelope: Envelope) -> None:
        raise RuntimeError("not this one")

    queue = qname(make_bus, "own-failing")
    await bus.subscribe(queue, ["tick.#"], refuse, transient=True)
    await bus.publish("tick.005930", tick_envelope())
    dead: list = []
    deadline = asyncio.get_running_loop().time() + 10
    while not dead:
        assert asyncio.get_running_loop().time() < deadline, "nothing was dead-lettered"
        dead.extend(await bus.take_dead_letters(queue))
        await asyncio.sleep(0.05)
    assert dead[0].reason == "RuntimeError: not this one"
    assert await bus.take_dead_letters(qname(make_bus, "never-declared")) == []
