"""RabbitMQ adapter (aio-pika): topic exchange, durable queues, confirms, retry and dead letters.

For a queue ``Q`` it keeps two companions: ``Q.retry`` (messages wait there ``retry_delay`` and
flow back to ``Q`` through the queue's own dead-letter routing) and ``Q.dead`` (messages that
failed ``max_attempts`` times or are not valid envelopes, with the reason in a header). The
consumer acks a message only after its handler returned, or after the message was safely
republished to ``Q.retry``/``Q.dead``: a crash at any point means redelivery, never loss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from pydantic import ValidationError

from common.bus.failures import describe_failure
from common.bus.port import D, DeadLetter, decoder
from common.contracts import Envelope
from common.errors import Unavailable
from common.metrics import BUS_CONSUMED, BUS_DEAD_LETTERED, BUS_HANDLER_SECONDS, BUS_PUBLISHED

log = structlog.get_logger(__name__)

ATTEMPTS_HEADER = "tradebot-attempts"
REASON_HEADER = "tradebot-dead-reason"
ROUTING_KEY_HEADER = "tradebot-routing-key"
TRANSIENT_COMPANION_EXPIRY_MS = 24 * 3600 * 1000

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPError,
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    RuntimeError,  # aio-pika raises it for a channel that is closed or reconnecting
)


class RabbitMQBus:
    """The production bus. ``url`` is an ``amqp://`` URL; ``exchange`` a durable topic exchange."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "market",
        prefetch: int = 64,
        max_attempts: int = 3,
        retry_delay: float = 1.0,
        drain_timeout: float = 10.0,
        publish_timeout: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        connection_name: str = "tradebot",
        queue_prefix: str = "",
    ) -> None:
        self._url = url
        self._queue_prefix = queue_prefix
        self._connection_name = connection_name
        self._exchange_name = exchange
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._drain_timeout = drain_timeout
        self._publish_timeout = publish_timeout
        self._max_message_bytes = max_message_bytes
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                self._url, timeout=10, client_properties={"connection_name": self._connection_name}
            )
            self._channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await self._channel.declare_exchange(
                self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except _CONNECTION_ERRORS as exc:
            raise Unavailable(f"RabbitMQ unreachable: {type(exc).__name__}") from exc
        log.info("bus.connected", exchange=self._exchange_name)

    # -- publishing ---------------------------------------------------------------------------

    @staticmethod
    def _message(envelope: Envelope) -> aio_pika.Message:
        return aio_pika.Message(
            envelope.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(envelope.message_id),
            correlation_id=envelope.correlation_id,
            type=envelope.kind,
            app_id=envelope.producer,
            timestamp=envelope.occurred_at,
        )

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        await self._publish_confirmed([(routing_key, self._message(envelope))])
        BUS_PUBLISHED.labels(envelope.kind).inc()

    async def publish_batch(self, messages: Sequence[tuple[str, Envelope]]) -> None:
        await self._publish_confirmed([(key, self._message(envelope)) for key, envelope in messages])
        for _, envelope in messages:
            BUS_PUBLISHED.labels(envelope.kind).inc()

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        """Publish bytes as they are (tests use it to send what a broken producer would)."""
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self._publish_confirmed([(routing_key, message)])

    async def _publish_confirmed(self, messages: list[tuple[str, aio_pika.Message]]) -> None:
        """Publish and wait for every confirm; across a reconnect, publish what was not confirmed.

        A message whose confirm was lost may reach the broker twice; consumers are idempotent
        by ``message_id``, so a duplicate costs nothing while a loss would.
        """
        deadline = time.monotonic() + self._publish_timeout
        pending = messages
        while True:
            exchange = self._require_exchange()
            # Not mandatory: a message no queue is bound for (features while no inferencer runs) is
            # dropped by the broker instead of sent back whole, to be ignored here.
            results = await asyncio.gather(
                *(exchange.publish(message, routing_key=key, mandatory=False) for key, message in pending),
                return_exceptions=True,
            )
            failed = [item for item, result in zip(pending, results, strict=True) if isinstance(result, BaseException)]
            if not failed:
                return
            error = next(r for r in results if isinstance(r, BaseException))
            if not isinstance(error, (*_CONNECTION_ERRORS, aio_pika.exceptions.DeliveryError)):
                raise error
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"{len(failed)} message(s) not confirmed by RabbitMQ: {type(error).__name__}"
                ) from error
            log.warning("bus.publish_retrying", unconfirmed=len(failed), error=type(error).__name__)
            pending = failed
            await asyncio.sleep(0.5)

    def _require_exchange(self) -> AbstractExchange:
        if self._exchange is None:
            raise Unavailable("bus not started")
        return self._exchange

    def _require_channel(self) -> AbstractChannel:
        if self._channel is None:
            raise Unavailable("bus not started")
        return self._channel

    # -- consuming ----------------------------------------------------------------------------

    def _queue_name(self, queue: str) -> str:
        return f"{self._queue_prefix}{queue}"

    async def _declare_on(
        self, channel: AbstractChannel, queue: str, patterns: Sequence[str], *, transient: bool = False
    ) -> AbstractQueue:
        """Declare ``queue`` (already prefixed) with its ``.dead`` and ``.retry`` companions.

        A transient queue is exclusive to this connection and deleted with it; its companions
        expire once unused for a day (they never have consumers, so auto-delete would not fire).
        """
        if transient:
            main = await channel.declare_queue(queue, durable=False, exclusive=True, auto_delete=True)
        else:
            main = await channel.declare_queue(queue, durable=True)
        exchange = await channel.get_exchange(self._exchange_name, ensure=False)
        for pattern in patterns:
            await main.bind(exchange, routing_key=pattern)
        expiry: dict[str, Any] = {"x-expires": TRANSIENT_COMPANION_EXPIRY_MS} if transient else {}
        await channel.declare_queue(f"{queue}.dead", durable=True, arguments=expiry)
        await channel.declare_queue(
            f"{queue}.retry",
            durable=True,
            arguments={
                "x-message-ttl": int(self._retry_delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
                **expiry,
            },
        )
        return main

    async def declare(self, queue: str, patterns: Sequence[str]) -> None:
        await self._declare_on(self._require_channel(), self._queue_name(queue), patterns)

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
        if self._connection is None:
            raise Unavailable("bus not started")
        # A channel per consumer: its prefetch is its own, and a slow queue doesn't starve others.
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch or self._prefetch)
        queue = self._queue_name(queue)
        main = await self._declare_on(channel, queue, patterns, transient=transient)
        decode_body = decoder(decode)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                await self._handle(channel, queue, message, decode_body, handler)
            finally:
                self._in_flight.discard(task)

        tag = await main.consume(on_message)
        self._consumers.append((main, tag))

    async def _handle(
        self,
        channel: AbstractChannel,
        queue: str,
        message: AbstractIncomingMessage,
        decode: Callable[[bytes], D],
        handler: Callable[[D], Awaitable[None]],
    ) -> None:
        headers = message.headers or {}
        attempts = int(str(headers.get(ATTEMPTS_HEADER, 0)))
        routing_key = str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or "")
        try:
            if len(message.body) > self._max_message_bytes:
                await self._dead_letter(channel, queue, message, routing_key, attempts, "message too large")
                return
            try:
                envelope = decode(message.body)
            except ValidationError as exc:
                await self._dead_letter(channel, queue, message, routing_key, attempts, describe_failure(exc))
                return
            started = time.perf_counter()
            try:
                with structlog.contextvars.bound_contextvars(
                    message_id=str(envelope.message_id), correlation_id=envelope.correlation_id, kind=envelope.kind
                ):
                    await handler(envelope)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempts += 1
                if attempts >= self._max_attempts:
                    await self._dead_letter(channel, queue, message, routing_key, attempts, describe_failure(exc))
                else:
                    log.warning("bus.handler_failed_retrying", queue=queue, attempts=attempts, error=str(exc)[:200])
                    await self._republish(channel, f"{queue}.retry", message, routing_key, attempts, None)
                    BUS_CONSUMED.labels(queue, "retried").inc()
                return
            finally:
                BUS_HANDLER_SECONDS.labels(queue).observe(time.perf_counter() - started)
            await message.ack()
            BUS_CONSUMED.labels(queue, "ok").inc()
        except _CONNECTION_ERRORS as exc:
            # The ack or the republish did not get through: the broker redelivers the message.
            log.warning("bus.ack_lost", queue=queue, error=type(exc).__name__)

    async def _dead_letter(
        self,
        channel: AbstractChannel,
        queue: str,
        message: AbstractIncomingMessage,
        routing_key: str,
        attempts: int,
        reason: str,
    ) -> None:
        log.error("bus.dead_lettered", queue=queue, routing_key=routing_key, attempts=attempts, reason=reason)
        await self._republish(channel, f"{queue}.dead", message, routing_key, attempts, reason)
        BUS_CONSUMED.labels(queue, "dead_lettered").inc()
        BUS_DEAD_LETTERED.labels(queue).inc()

    @staticmethod
    async def _republish(
        channel: AbstractChannel,
        target: str,
        message: AbstractIncomingMessage,
        routing_key: str,
        attempts: int,
        reason: str | None,
    ) -> None:
        headers: dict[str, Any] = {ATTEMPTS_HEADER: attempts, ROUTING_KEY_HEADER: routing_key}
        if reason is not None:
            headers[REASON_HEADER] = reason
            headers["tradebot-dead-at"] = datetime.now(UTC).isoformat()
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            app_id=message.app_id,
        )
        await channel.default_exchange.publish(copy, routing_key=target)
        await message.ack()

    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        if self._connection is None:
            raise Unavailable("bus not started")
        # A channel of its own and a passive declare: the dead queue is read as it was declared
        # (a transient queue's carries an expiry), and a missing one closes only this channel.
        async with self._connection.channel() as channel:
            try:
                dead = await channel.declare_queue(f"{self._queue_name(queue)}.dead", passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return []
            return await self._drain_dead(queue, dead, limit)

    @staticmethod
    async def _drain_dead(queue: str, dead: AbstractQueue, limit: int) -> list[DeadLetter]:
        taken: list[DeadLetter] = []
        while len(taken) < limit:
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = message.headers or {}
            taken.append(
                DeadLetter(
                    queue=queue,
                    routing_key=str(headers.get(ROUTING_KEY_HEADER, "")),
                    body=message.body,
                    reason=str(headers.get(REASON_HEADER, "")),
                    attempts=int(str(headers.get(ATTEMPTS_HEADER, 0))),
                )
            )
            await message.ack()
        return taken

    async def healthy(self) -> bool:
        connection = self._connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def close(self) -> None:
        """Stop deliveries, let in-flight handlers finish, then close the connection."""
        for queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
            except _CONNECTION_ERRORS as exc:
                log.warning("bus.cancel_failed", error=type(exc).__name__)
        self._consumers.clear()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=self._drain_timeout)
            if pending:  # unacked: the broker redelivers them to another consumer
                log.warning("bus.drain_timeout", abandoned=len(pending))
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._channel = None
        self._exchange = None
