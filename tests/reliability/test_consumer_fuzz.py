"""Reliability: bad input on the bus — every consumer of every service, through real RabbitMQ.

The data-processor and the inferencer (the services that consume the bus) run as in distributed
mode: each on its own ``Runtime`` with a ``RabbitMQBus`` (this run's own exchange and queue
prefix) and PostgreSQL. Raw bytes are published to the exchange with aio-pika, as a broken or
hostile producer would: not JSON, truncated, deeply nested, oversized (beyond the contracts'
limits), unknown kinds and versions, missing fields, wrong types — plus generated mutations of
valid messages (hypothesis, bounded). Then, for every consumer:

- every message was either acknowledged or moved to its dead-letter queue; nothing is stuck
  unacknowledged or lost (the consumers' own outcome counters add up);
- every dead letter carries a reason, and every message that is not a valid envelope is one;
- the consumer still works: a valid message sent afterwards has its effect (a row, a decision,
  a model swap).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from common.bus import MessageBus
from common.bus.port import DeadLetter
from common.bus.rabbitmq import REASON_HEADER, ROUTING_KEY_HEADER
from common.contracts import Envelope
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from data_processor.app import create_app as create_processor
from data_processor.settings import DataProcessorSettings
from inferencer.app import create_app as create_inferencer
from inferencer.settings import InferencerSettings
from tests.conftest import REPO_ROOT
from tests.inferencer.conftest import make_model

Json = dict[str, Any]
SYMBOL = "005930"
SENTINEL_SYMBOL = "035720"  # valid messages after the fuzz use their own symbol: a clean slate
T0 = datetime(2024, 3, 4, 1, 0, tzinfo=UTC)  # Monday 10:00 KST, in session
GENERATED_EXAMPLES = 50


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def envelope(payload: Json, **fields: Any) -> Json:
    return {
        "message_id": str(uuid.uuid4()),
        "occurred_at": _iso(T0),
        "producer": "reliability-fuzz",
        "correlation_id": "fuzz",
        "payload": payload,
        **fields,
    }


def tick(symbol: str, ts: datetime, seq: int = 0) -> Json:
    return {"symbol": symbol, "ts": _iso(ts), "seq": seq, "price": 70_000, "volume": 10}


def bar(symbol: str, ts: datetime) -> Json:
    return {
        "symbol": symbol, "timeframe": "1m", "ts": _iso(ts),
        "open": 70_000, "high": 70_500, "low": 69_900, "close": 70_200, "volume": 1_000,
    }  # fmt: skip


def features(symbol: str, ts: datetime) -> Json:
    return {
        "kind": "features.v1", "symbol": symbol, "timeframe": "1m", "ts": _iso(ts), "close": 70_200,
        "values": {"ret_1": 0.001, "rsi_14": 55.0, "vol_ratio": None}, "feature_set": "core-v1",
    }  # fmt: skip


@dataclass(frozen=True)
class Consumer:
    """One bus consumer: its queue (unprefixed; a replica's own queue adds a suffix to it), a
    routing key it is bound to, and a valid payload."""

    service: str
    queue: str
    routing_key: str
    valid_payload: Callable[[Path], Json]


def _model_payload(models: Path) -> Json:
    return {
        "kind": "model.promoted.v1", "model_id": str(uuid.uuid4()), "version": "v2",
        "artifact_uri": (models / "model-v2").as_uri(), "promoted_at": _iso(T0),
    }  # fmt: skip


CONSUMERS = (
    Consumer(
        "data-processor", "data-processor.ticks", f"tick.{SYMBOL}",
        lambda _: {"kind": "market.tick_batch.v1", "ticks": [tick(SYMBOL, T0), tick(SYMBOL, T0, 1)]},
    ),
    Consumer(
        "data-processor", "data-processor.bars", f"bar.1m.{SYMBOL}",
        lambda _: {"kind": "market.bar.v1", "bars": [bar(SYMBOL, T0)], "source": "kis"},
    ),
    Consumer(
        "data-processor", "data-processor.quotes", f"quote.{SYMBOL}",
        lambda _: {"kind": "market.quote.v1", "symbol": SYMBOL, "ts": _iso(T0), "price": 70_000, "per": "12.5"},
    ),
    Consumer("inferencer", "inferencer.features", f"features.1m.{SYMBOL}", lambda _: features(SYMBOL, T0)),
    Consumer("inferencer", "inferencer.models", "model.promoted", _model_payload),
)  # fmt: skip


# --- what gets published ----------------------------------------------------------------------


def malformed(consumer: Consumer, models: Path) -> list[bytes]:
    """Messages that are not a valid envelope for any consumer: each must be dead-lettered."""
    valid = consumer.valid_payload(models)

    def with_payload(**changes: Any) -> bytes:
        return json.dumps(envelope({**valid, **changes})).encode()

    def without(key: str) -> bytes:
        document = envelope(valid)
        del document[key]
        return json.dumps(document).encode()

    first_key = next(k for k in valid if k != "kind")
    kind = str(valid["kind"])
    return [
        b"",
        b"not json at all",
        b"\xff\xfe\x00\x01binary",
        json.dumps(envelope(valid))[:40].encode(),  # truncated
        b"[" * 50_000 + b"]" * 50_000,  # nested deeper than any parser's recursion limit
        b"null",
        b"[]",
        b'"an envelope"',
        b"{}",
        without("payload"),
        without("producer"),
        json.dumps(envelope(valid, message_id="not-a-uuid")).encode(),
        json.dumps(envelope(valid, occurred_at="2024-03-04T10:00:00")).encode(),  # naive time
        json.dumps(envelope(valid, producer="p" * 10_000)).encode(),
        with_payload(kind=kind.replace(".v1", ".v2")),  # a version nobody reads yet
        with_payload(kind="market.unknown.v1"),
        with_payload(kind=None),
        with_payload(**{first_key: {"nested": ["wrong", "type"]}}),
        with_payload(unexpected_field=1),  # payloads are strict
        json.dumps(envelope({k: v for k, v in valid.items() if k != first_key})).encode(),
        json.dumps(envelope(valid)).encode().replace(b'"reliability-fuzz"', b'"\xff\xfe"'),  # invalid UTF-8
    ]


def oversized_tick_batch() -> bytes:
    """More ticks than a batch may hold (50,000): several megabytes the contract refuses."""
    ticks = [tick(SYMBOL, T0 + timedelta(milliseconds=i), i) for i in range(50_001)]
    return json.dumps(envelope({"kind": "market.tick_batch.v1", "ticks": ticks})).encode()


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "005930", "Q00593", "2024-03-04T10:00:00+09:00", "nan", "1e309", "\u0000", "' OR 1=1 --"]),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _paths(document: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found: list[tuple[str | int, ...]] = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _mutate(document: Json, path: tuple[str | int, ...], value: Any, delete: bool) -> Json:
    mutated = copy.deepcopy(document)
    parent: Any = mutated
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return mutated


@st.composite
def mutations(draw: st.DrawFn, models: Path) -> tuple[Consumer, bytes]:
    """A valid message of some consumer with one field replaced by any JSON value, or removed."""
    consumer = draw(st.sampled_from(CONSUMERS))
    document = envelope(consumer.valid_payload(models))
    path = draw(st.sampled_from(_paths(document)))
    mutated = _mutate(document, path, draw(JSON_VALUES), delete=draw(st.booleans()))
    return consumer, json.dumps(mutated, allow_nan=True).encode()


# Values the contracts accept but nobody expects: prices and volumes beyond 64 bits, instants
# at the ends of the calendar, non-finite feature values.
HUGE = st.one_of(st.integers(min_value=0, max_value=10**6), st.sampled_from([2**31, 2**63 - 1, 2**63, 10**25]))
INSTANTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))
SYMBOLS = st.sampled_from([SYMBOL, "Q00593", "ZZZZZZ"])


@st.composite
def extremes(draw: st.DrawFn) -> tuple[Consumer, bytes]:
    """A message that passes its contract with extreme values, so that it reaches the handler."""
    ticks, bars, quotes, features_, _ = CONSUMERS
    consumer = draw(st.sampled_from([ticks, bars, quotes, features_]))
    symbol, ts = draw(SYMBOLS), _iso(draw(INSTANTS))
    payload: Json
    if consumer is ticks:
        price = HUGE.map(lambda v: v + 1)
        columns = {"symbol": st.just(symbol), "ts": INSTANTS.map(_iso), "seq": HUGE, "price": price, "volume": HUGE}
        rows = st.fixed_dictionaries(columns)
        payload = {"kind": "market.tick_batch.v1", "ticks": draw(st.lists(rows, min_size=1, max_size=5))}
    elif consumer is bars:
        prices = {k: draw(HUGE) for k in ("open", "high", "low", "close", "volume")}
        timeframe = draw(st.sampled_from(["1m", "1d"]))
        payload = {"kind": "market.bar.v1", "bars": [{"symbol": symbol, "timeframe": timeframe, "ts": ts, **prices}]}
    elif consumer is quotes:
        ratio = st.one_of(st.none(), st.sampled_from(["NaN", "Infinity", "-1e400", "1e400", "0.000001", "-3"]))
        payload = {"kind": "market.quote.v1", "symbol": symbol, "ts": ts, "price": draw(HUGE) + 1}
        payload |= {"per": draw(ratio), "eps": draw(ratio), "market_cap": draw(HUGE), "listed_shares": draw(HUGE)}
    else:
        value = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
        names = st.sampled_from(["ret_1", "rsi_14", "vol_ratio", "x"])
        payload = {**features(symbol, draw(INSTANTS)), "close": draw(HUGE) + 1}
        payload["values"] = draw(st.dictionaries(names, value))
    return consumer, json.dumps(envelope(payload), allow_nan=True).encode()


def generated(models: Path) -> list[tuple[Consumer, bytes]]:
    """``GENERATED_EXAMPLES`` mutations and as many extremes, the same ones every run."""
    return _draw(mutations(models)) + _draw(extremes())


def _draw(strategy: st.SearchStrategy[tuple[Consumer, bytes]]) -> list[tuple[Consumer, bytes]]:
    drawn: list[tuple[Consumer, bytes]] = []

    @settings(
        max_examples=GENERATED_EXAMPLES,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(example: tuple[Consumer, bytes]) -> None:
        drawn.append(example)

    collect()
    return drawn


# --- the services under fuzz ------------------------------------------------------------------


@dataclass
class RecordingBus:
    """The runtime's bus, recording which queues the service subscribes (to know every consumer)."""

    inner: MessageBus
    subscribed: list[str] = field(default_factory=list)

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        await self.inner.publish(routing_key, envelope)

    async def publish_batch(self, messages: Sequence[tuple[str, Envelope]]) -> None:
        await self.inner.publish_batch(messages)

    async def declare(self, queue: str, patterns: Sequence[str]) -> None:
        await self.inner.declare(queue, patterns)

    async def subscribe(
        self, queue: str, patterns: Sequence[str], handler: Callable[[Any], Awaitable[None]], **options: Any
    ) -> None:
        self.subscribed.append(queue)
        await self.inner.subscribe(queue, patterns, handler, **options)

    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return await self.inner.take_dead_letters(queue, limit)

    async def healthy(self) -> bool:
        return await self.inner.healthy()

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Services:
    processor: FastAPI
    inferencer: FastAPI
    subscribed: list[str]
    prefix: str
    exchange: str


@contextlib.asynccontextmanager
async def running_services(pg_url: str, amqp_url: str, models: Path) -> AsyncIterator[Services]:
    run = uuid.uuid4().hex[:10]
    exchange, prefix = f"reliability-fuzz-{run}", f"reliability-fuzz-{run}."
    runtime_settings = RuntimeSettings(
        mode=Mode.DISTRIBUTED,
        database_url=SecretStr(pg_url),
        amqp_url=SecretStr(amqp_url),
        bus_exchange=exchange,
        bus_queue_prefix=prefix,
        bus_retry_delay_seconds=0.2,
        bus_max_attempts=3,
    )
    subscribed: list[str] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            apps: list[FastAPI] = []
            for name in ("data-processor", "inferencer"):
                runtime = Runtime.from_settings(runtime_settings, name=f"reliability-{name}")
                recording = RecordingBus(runtime.bus)
                runtime.bus = recording
                await stack.enter_async_context(runtime)
                if name == "data-processor":
                    # Features would feed the inferencer's queue and blur its accounting.
                    app = create_processor(runtime, DataProcessorSettings(publish_features=False))
                else:
                    settings = InferencerSettings(model_uri=(models / "model-v1").as_uri(), trade=False)
                    app = create_inferencer(runtime, settings=settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                apps.append(app)
                subscribed.extend(recording.subscribed)
            yield Services(apps[0], apps[1], subscribed, prefix, exchange)
    finally:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for queue in subscribed:
                for suffix in ("", ".dead", ".retry"):
                    await channel.queue_delete(f"{prefix}{queue}{suffix}")
            await channel.exchange_delete(exchange)


def actual_queue(consumer: Consumer, subscribed: list[str]) -> str:
    """The queue a service really subscribed for ``consumer`` (a per-replica queue has a suffix)."""
    found = [q for q in subscribed if q == consumer.queue or q.startswith(f"{consumer.queue}.")]
    assert len(found) == 1, f"{consumer.queue}: subscribed {subscribed}"
    return found[0]


def consumed(queue: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("tradebot_bus_messages_consumed_total", {"queue": queue, "outcome": outcome})
    return value or 0.0


async def dead_letters(channel: aio_pika.abc.AbstractChannel, queue: str) -> list[tuple[bytes, str, str]]:
    """(body, reason, routing key) of every dead letter of ``queue``, acknowledged as read."""
    dead = await channel.get_queue(f"{queue}.dead", ensure=True)  # passive: its arguments are the bus's
    found: list[tuple[bytes, str, str]] = []
    while (message := await dead.get(no_ack=False, fail=False)) is not None:
        headers = message.headers or {}
        found.append((message.body, str(headers.get(REASON_HEADER, "")), str(headers.get(ROUTING_KEY_HEADER, ""))))
        await message.ack()
    return found


async def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(0.1)


def test_the_fuzzed_consumers_are_every_bus_consumer_in_the_services() -> None:
    """A new ``bus.subscribe`` anywhere in a service must join ``CONSUMERS`` above."""
    call = re.compile(r"\bbus\.subscribe\(")
    sites = {
        str(path.relative_to(REPO_ROOT)): len(call.findall(path.read_text()))
        for path in REPO_ROOT.glob("*/src/*/**/*.py")
        if call.search(path.read_text())
    }
    assert sites == {
        "data-processor/src/data_processor/consumers.py": 3,
        "inferencer/src/inferencer/consumers.py": 2,
    }


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_every_consumer_dead_letters_bad_messages_with_a_reason_and_keeps_consuming(
    pg_url: str, amqp_url: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    for version, favoured in (("v1", 1), ("v2", 2), ("v3", 3)):
        make_model(models, version, favoured=favoured)
    async with running_services(pg_url, amqp_url, models) as services:
        # Queue names are this run's own: their counters start at zero.
        queues = {c.queue: f"{services.prefix}{actual_queue(c, services.subscribed)}" for c in CONSUMERS}
        assert len(services.subscribed) == len(CONSUMERS), services.subscribed

        invalid: dict[str, list[bytes]] = {c.queue: malformed(c, models) for c in CONSUMERS}
        invalid["data-processor.ticks"].append(oversized_tick_batch())
        outgoing: list[tuple[Consumer, bytes]] = [(c, body) for c in CONSUMERS for body in invalid[c.queue]]
        outgoing += generated(models)
        sent = {c.queue: sum(1 for target, _ in outgoing if target is c) for c in CONSUMERS}

        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(services.exchange)
            for consumer, body in outgoing:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await exchange.publish(message, routing_key=consumer.routing_key)

            def settled() -> dict[str, int]:
                return {q: int(consumed(queues[q], "ok") + consumed(queues[q], "dead_lettered")) for q in sent}

            deadline = time.monotonic() + 60
            while settled() != sent:  # acknowledged or dead-lettered: nothing stuck, nothing lost
                assert time.monotonic() < deadline, f"sent {sent}, acknowledged or dead-lettered {settled()}"
                await asyncio.sleep(0.1)

            for consumer in CONSUMERS:
                queue = queues[consumer.queue]
                dead = await dead_letters(channel, queue)
                assert len(dead) == consumed(queue, "dead_lettered"), consumer.queue
                assert all(reason for _, reason, _ in dead), f"a dead letter of {consumer.queue} has no reason"
                assert all(key == consumer.routing_key for _, _, key in dead)
                bodies = [body for body, _, _ in dead]
                missing = [body[:80] for body in invalid[consumer.queue] if body not in bodies]
                assert missing == [], f"{consumer.queue}: invalid messages not dead-lettered: {missing}"

            # What a contract accepts, the data-processor stores or quarantines: its handlers
            # never failed (a failure would be retried, then dead-lettered).
            assert [
                c.queue for c in CONSUMERS if c.service == "data-processor" and consumed(queues[c.queue], "retried")
            ] == []

            # Every consumer still consumes: valid messages sent now have their effect.
            await publish_sentinels(exchange, models)
            await sentinels_took_effect(pg_url, services)


async def publish_sentinels(exchange: aio_pika.abc.AbstractExchange, models: Path) -> None:
    later = T0 + timedelta(minutes=5)
    messages: list[tuple[str, Json]] = [
        (f"tick.{SENTINEL_SYMBOL}", {"kind": "market.tick_batch.v1", "ticks": [tick(SENTINEL_SYMBOL, later)]}),
        (f"bar.1m.{SENTINEL_SYMBOL}", {"kind": "market.bar.v1", "bars": [bar(SENTINEL_SYMBOL, later)]}),
        (f"quote.{SENTINEL_SYMBOL}", {"kind": "market.quote.v1", "symbol": SENTINEL_SYMBOL, "ts": _iso(later),
                                      "price": 70_000}),
        (f"features.1m.{SENTINEL_SYMBOL}", features(SENTINEL_SYMBOL, later)),
        (f"features.1m.{SENTINEL_SYMBOL}", features(SENTINEL_SYMBOL, later + timedelta(minutes=1))),
        ("model.promoted", {"kind": "model.promoted.v1", "model_id": str(uuid.uuid4()), "version": "v3",
                            "artifact_uri": (models / "model-v3").as_uri(), "promoted_at": _iso(later)}),
    ]  # fmt: skip
    for routing_key, payload in messages:
        body = json.dumps(envelope(payload)).encode()
        await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key)
        if payload["kind"] == "features.v1":
            await asyncio.sleep(0.3)  # the window of two needs them in order


async def sentinels_took_effect(pg_url: str, services: Services) -> None:
    engine = create_async_engine(pg_url)
    try:

        async def stored() -> bool:
            async with engine.connect() as conn:
                counts = [
                    await conn.scalar(text(f"SELECT count(*) FROM {table} WHERE symbol = :s"), {"s": SENTINEL_SYMBOL})
                    for table in ("ticks", "bars", "fundamentals", "decisions")
                ]
            return all(counts)

        await eventually(stored, "the sentinel tick, bar, quote and decision to be stored")
    finally:
        await engine.dispose()
    transport = httpx.ASGITransport(app=services.inferencer)
    async with httpx.AsyncClient(transport=transport, base_url="http://inferencer") as http:

        async def swapped() -> bool:
            served = (await http.get("/inference/model")).json()
            return bool(served["loaded"] and served["model"]["version"] == "v3")

        await eventually(swapped, "the inferencer to serve the promoted model v3", timeout=30)
