"""In-process bus for all-in-one mode and unit tests.

Behaves like the RabbitMQ adapter where it matters: every message goes through JSON (so a
contract that doesn't round-trip fails here too), queues are shared by their consumers,
handlers are retried and then dead-lettered with the reason, and ``close`` drains.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic

import structlog
from pydantic import ValidationError

from common.bus.failures import describe_failure
from common.bus.port import D, DeadLetter, decoder
from common.bus.topics import topic_matches
from common.contracts import Envelope
from common.errors import Unavailable
from common.metrics import BUS_CONSUMED, BUS_DEAD_LETTERED, BUS_HANDLER_SECONDS, BUS_PUBLISHED

log = structlog.get_logger(__name__)


@dataclass
class _Delivery:
    routing_key: str
    body: bytes
    attempts: int = 0


@dataclass(frozen=True)
class _Subscription(Generic[D]):
    decode: Callable[[bytes], D]
    handler: Callable[[D], Awaitable[None]]


@dataclass
class _Queue:
    name: str
    patterns: set[str] = field(default_factory=set)
    messages: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)


class InMemoryBus:
    """A topic exchange with durable-like queues, held in this process."""

    def __init__(
        self,
        *,
        prefetch: int = 64,
        max_attempts: int = 3,
        retry_delay: float = 0.0,
        drain_timeout: float = 10.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._drain_timeout = drain_timeout
        self._max_message_bytes = max_message_bytes
        self._queues: dict[str, _Queue] = {}
        self._dead: dict[str, deque[DeadLetter]] = defaultdict(deque)
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closing = False
        self._started = False

    async def start(self) -> None:
        self._started = True
        self._closing = False

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        self.publish_raw(routing_key, envelope.model_dump_json().encode())
        BUS_PUBLISHED.labels(envelope.kind).inc()

    async def publish_batch(self, messages: Sequence[tuple[str, Envelope]]) -> None:
        for routing_key, envelope in messages:
            self.publish_raw(routing_key, envelope.model_dump_json().encode())
            BUS_PUBLISHED.labels(envelope.kind).inc()

    def publish_raw(self, routing_key: str, body: bytes) -> None:
        """Publish bytes as they are (tests use it to send what a broken producer would)."""
        if self._closing:
            raise Unavailable("bus is closing")
        for queue in self._queues.values():
            if any(topic_matches(p, routing_key) for p in queue.patterns):
                queue.messages.put_nowait(_Delivery(routing_key, body))

    async def declare(self, queue: str, patterns: Sequence[str]) -> None:
        self._queue(queue).patterns.update(patterns)

    def _queue(self, name: str) -> _Queue:
        if name not in self._queues:
            self._queues[name] = _Queue(name)
        return self._queues[name]

    async def subscribe(
        self,
        queue: str,
        patterns: Sequence[str],
        handler: Callable[[D], Awaitable[None]],
        *,
        transient: bool = False,
        prefetch: int | None = None,
        decode: Callable[[bytes], D] | None = None,
    ) -> None:
        # In one process every queue lives as long as the bus; ``transient`` changes nothing here.
        await self.declare(queue, patterns)
        target = self._queue(queue)
        subscription = _Subscription(decoder(decode), handler)
        for _ in range(prefetch or self._prefetch):
            self._workers.append(asyncio.create_task(self._consume(target, subscription), name=f"bus:{queue}"))

    async def _consume(self, queue: _Queue, subscription: _Subscription[D]) -> None:
        while not self._closing:
            delivery = await queue.messages.get()
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                await self._deliver(queue, delivery, subscription)
            finally:
                self._in_flight.discard(task)
                queue.messages.task_done()

    async def _deliver(self, queue: _Queue, delivery: _Delivery, subscription: _Subscription[D]) -> None:
        if len(delivery.body) > self._max_message_bytes:
            self._dead_letter(queue, delivery, f"message too large: {len(delivery.body)} bytes")
            return
        try:
            message = subscription.decode(delivery.body)
        except ValidationError as exc:
            self._dead_letter(queue, delivery, describe_failure(exc))
            return
        delivery.attempts += 1
        started = time.perf_counter()
        try:
            with structlog.contextvars.bound_contextvars(
                message_id=str(message.message_id), correlation_id=message.correlation_id, kind=message.kind
            ):
                await subscription.handler(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            BUS_HANDLER_SECONDS.labels(queue.name).observe(time.perf_counter() - started)
            if delivery.attempts >= self._max_attempts:
                self._dead_letter(queue, delivery, describe_failure(exc))
                return
            BUS_CONSUMED.labels(queue.name, "retried").inc()
            log.warning("bus.handler_failed_retrying", queue=queue.name, attempts=delivery.attempts, error=str(exc))
            if self._retry_delay:
                await asyncio.sleep(self._retry_delay)
            queue.messages.put_nowait(delivery)
            return
        BUS_HANDLER_SECONDS.labels(queue.name).observe(time.perf_counter() - started)
        BUS_CONSUMED.labels(queue.name, "ok").inc()

    def _dead_letter(self, queue: _Queue, delivery: _Delivery, reason: str) -> None:
        log.error("bus.dead_lettered", queue=queue.name, routing_key=delivery.routing_key, reason=reason)
        BUS_CONSUMED.labels(queue.name, "dead_lettered").inc()
        BUS_DEAD_LETTERED.labels(queue.name).inc()
        self._dead[queue.name].append(
            DeadLetter(queue.name, delivery.routing_key, delivery.body, reason, delivery.attempts)
        )

    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        dead = self._dead[queue]
        return [dead.popleft() for _ in range(min(limit, len(dead)))]

    async def healthy(self) -> bool:
        return self._started and not self._closing

    async def close(self) -> None:
        """Stop taking messages, let handlers in flight finish, then stop the workers."""
        self._closing = True
        for worker in self._workers:
            if worker not in self._in_flight:
                worker.cancel()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=self._drain_timeout)
            if pending:
                log.warning("bus.drain_timeout", abandoned=len(pending))
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
