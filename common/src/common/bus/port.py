"""The message bus port: what every adapter (in-memory, RabbitMQ) must do.

Semantics shared by every adapter, pinned by ``tests/common/test_bus_conformance.py``:
- ``publish`` returns only when the broker has confirmed the message (persistent).
- Topic patterns: words separated by dots, ``*`` matches one word, ``#`` zero or more.
- A named queue survives its consumers; several consumers of one queue share its messages;
  different queues each get a copy. A ``transient`` queue belongs to one consumer and goes
  away with it (one replica's own copy of broadcast events, e.g. model promotions).
- A handler that returns acks the message. One that raises is retried (``max_attempts`` in all)
  and then dead-lettered with the reason; a message that is not a valid ``Envelope`` is
  dead-lettered at once without calling the handler. Nothing is dropped silently.
- A subscription may bring its own ``decode`` (body → what its handler takes, raising
  ``pydantic.ValidationError`` exactly where ``Envelope`` validation would) and its own
  ``prefetch`` (how many unacknowledged messages it holds; the bus's default otherwise).
- ``close`` stops deliveries, waits for handlers in flight (up to the drain timeout), then closes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast, overload

from common.contracts import Envelope

Handler = Callable[[Envelope], Awaitable[None]]


class Delivery(Protocol):
    """What a handler is given: an ``Envelope``, or what its subscription's ``decode`` made of one."""

    @property
    def message_id(self) -> uuid.UUID: ...

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def kind(self) -> str: ...


D = TypeVar("D", bound=Delivery)


def decoder(decode: Callable[[bytes], D] | None) -> Callable[[bytes], D]:
    """``decode``, or plain ``Envelope`` validation for a subscription without one (whose handler
    takes an ``Envelope``: the overloads of ``MessageBus.subscribe`` see to that)."""
    return decode if decode is not None else cast(Callable[[bytes], D], Envelope.model_validate_json)


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed, with why."""

    queue: str
    routing_key: str
    body: bytes
    reason: str
    attempts: int


class MessageBus(Protocol):
    """Publish/subscribe over topic routing keys, at-least-once, confirmed."""

    async def start(self) -> None: ...

    async def publish(self, routing_key: str, envelope: Envelope) -> None: ...

    async def publish_batch(self, messages: Sequence[tuple[str, Envelope]]) -> None:
        """Publish many; returns when every one is confirmed, raises if any is not."""
        ...

    async def declare(self, queue: str, patterns: Sequence[str]) -> None:
        """Create the durable queue and its bindings so messages wait for a consumer."""
        ...

    @overload
    async def subscribe(
        self,
        queue: str,
        patterns: Sequence[str],
        handler: Handler,
        *,
        transient: bool = False,
        prefetch: int | None = None,
    ) -> None: ...

    @overload
    async def subscribe(
        self,
        queue: str,
        patterns: Sequence[str],
        handler: Callable[[D], Awaitable[None]],
        *,
        transient: bool = False,
        prefetch: int | None = None,
        decode: Callable[[bytes], D],
    ) -> None: ...

    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Remove and return up to ``limit`` dead letters of ``queue`` (operations, tests)."""
        ...

    async def healthy(self) -> bool: ...

    async def close(self) -> None: ...
