"""Bus handlers: tick batches, bar batches and quotes, each applied once through the inbox.

The inbox claim, the writes and the features share one transaction; the features are
published only after it commits. If the process dies between commit and publish, the
redelivered message is recognised as done and its features are not republished — the
stored rows stay right, and the next closed bar publishes again (an outbox would close that
window; see the service docs).

While the database is unreachable a message is held (unacknowledged) and applied again with
back-off until it answers: the bus's retry budget is for messages that fail, and spending it on
an outage would dead-letter good data. The prefetch window bounds how many messages are held;
the rest wait in the broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from common.bus import Handler
from common.bus.port import D, Delivery
from common.contracts import Envelope, MarketBarV1, MarketQuoteV1
from common.db import idempotent, is_unreachable
from common.runtime import Runtime
from data_processor.service import Outcome, Processor, features_message_id
from data_processor.settings import DataProcessorSettings
from data_processor.ticks import TickBatch, decode_tick_message

log = structlog.get_logger(__name__)

TICK_PATTERNS = ("tick.#",)
BAR_PATTERNS = ("bar.#",)
QUOTE_PATTERNS = ("quote.#",)
PRODUCER = "data-processor"

QUARANTINED = Counter(
    "tradebot_data_quarantined_total", "Records quarantined by the data processor", ["kind", "reason"]
)
STORED = Counter("tradebot_data_stored_total", "New ticks, bars and quotes stored by the data processor", ["kind"])
FEATURES_PUBLISHED = Counter("tradebot_features_published_total", "features.v1 messages published", ["timeframe"])

P = TypeVar("P", MarketBarV1, MarketQuoteV1)


DATABASE_RETRY_FIRST_SECONDS = 0.2
DATABASE_RETRY_MAX_SECONDS = 5.0


def _inbox_name(queue: str) -> str:
    return queue[:128]


def _handler(
    runtime: Runtime,
    settings: DataProcessorSettings,
    queue: str,
    kind: str,
    process: Callable[[AsyncSession, D], Awaitable[Outcome]],
) -> Callable[[D], Awaitable[None]]:
    """A handler applying ``process`` once per message (inbox) and publishing its features after commit."""

    async def handle(message: D) -> None:
        outcome = Outcome()

        async def apply(session: AsyncSession, claimed: D) -> None:
            nonlocal outcome
            outcome = await process(session, claimed)

        inbox = idempotent(_inbox_name(queue), runtime.sessionmaker, apply, clock=runtime.clock)
        await _once_the_database_answers(queue, lambda: inbox(message))
        await _after_commit(runtime, settings, message, outcome, kind)

    return handle


def _payload_of(
    queue: str, payload_type: type[P], process: Callable[[AsyncSession, P, uuid.UUID], Awaitable[Outcome]]
) -> Callable[[AsyncSession, Envelope], Awaitable[Outcome]]:
    """``process`` of an envelope's payload; a payload of another kind is logged and skipped."""

    async def apply(session: AsyncSession, envelope: Envelope) -> Outcome:
        if not isinstance(envelope.payload, payload_type):
            log.warning("data_processor.unexpected_kind", kind=envelope.kind, queue=queue)
            return Outcome()
        return await process(session, envelope.payload, envelope.message_id)

    return apply


async def _once_the_database_answers(queue: str, apply: Callable[[], Awaitable[None]]) -> None:
    """Run ``apply``; while it fails because the database is unreachable, wait and run it again."""
    delay, failures = DATABASE_RETRY_FIRST_SECONDS, 0
    while True:
        try:
            await apply()
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            failures += 1
            if failures == 1:
                log.warning("data_processor.database_unreachable", queue=queue, error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, DATABASE_RETRY_MAX_SECONDS)
            continue
        if failures:
            log.info("data_processor.database_back", queue=queue, retries=failures)
        return


def tick_handler(
    runtime: Runtime, processor: Processor, settings: DataProcessorSettings
) -> Callable[[TickBatch | Envelope], Awaitable[None]]:
    """The tick queue's handler: takes what ``decode_tick_message`` decoded (or an envelope)."""
    queue = settings.tick_queue

    async def process(session: AsyncSession, message: TickBatch) -> Outcome:
        if message.columns is None:
            log.warning("data_processor.unexpected_kind", kind=message.kind, queue=queue)
            return Outcome()
        return await processor.process_ticks(session, message.columns, message.message_id)

    handle = _handler(runtime, settings, queue, "tick", process)

    async def handle_ticks(message: TickBatch | Envelope) -> None:
        await handle(message if isinstance(message, TickBatch) else TickBatch.of(message))

    return handle_ticks


def bar_handler(runtime: Runtime, processor: Processor, settings: DataProcessorSettings) -> Handler:
    process = _payload_of(settings.bar_queue, MarketBarV1, processor.process_bars)
    return _handler(runtime, settings, settings.bar_queue, "bar", process)


def quote_handler(runtime: Runtime, processor: Processor, settings: DataProcessorSettings) -> Handler:
    process = _payload_of(settings.quote_queue, MarketQuoteV1, processor.process_quote)
    return _handler(runtime, settings, settings.quote_queue, "quote", process)


async def _after_commit(
    runtime: Runtime, settings: DataProcessorSettings, source: Delivery, outcome: Outcome, kind: str
) -> None:
    for (record_kind, reason), count in outcome.quarantined.items():
        QUARANTINED.labels(record_kind, reason).inc(count)
    if outcome.quarantined:
        log.info(
            "data_processor.quarantined",
            message_id=str(source.message_id),
            reasons={f"{k}:{r}": c for (k, r), c in outcome.quarantined.items()},
        )
    STORED.labels(kind).inc(outcome.stored)
    if not settings.publish_features or not outcome.features:
        return
    correlation = source.correlation_id or str(source.message_id)
    messages = [
        (
            f"features.{f.timeframe}.{f.symbol}",
            Envelope(message_id=features_message_id(f), producer=PRODUCER, correlation_id=correlation, payload=f),
        )
        for f in outcome.features
    ]
    await runtime.bus.publish_batch(messages)
    for f in outcome.features:
        FEATURES_PUBLISHED.labels(f.timeframe).inc()


async def start_consumers(runtime: Runtime, processor: Processor, settings: DataProcessorSettings) -> None:
    # Tick batches are large: the tick queue's own prefetch bounds how many are held in memory.
    await runtime.bus.subscribe(
        settings.tick_queue,
        TICK_PATTERNS,
        tick_handler(runtime, processor, settings),
        prefetch=settings.tick_prefetch,
        decode=decode_tick_message,
    )
    await runtime.bus.subscribe(settings.bar_queue, BAR_PATTERNS, bar_handler(runtime, processor, settings))
    await runtime.bus.subscribe(settings.quote_queue, QUOTE_PATTERNS, quote_handler(runtime, processor, settings))
    log.info(
        "data_processor.consuming", ticks=settings.tick_queue, bars=settings.bar_queue, quotes=settings.quote_queue
    )
