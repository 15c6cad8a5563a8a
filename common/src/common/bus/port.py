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
- ``close`` stops deliveries, waits for handlers in flight (up to the drain timeout), then closes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.contracts import Envelope

Handler = Callable[[Envelope], Awaitable[None]]


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

    async def subscribe(
        self, queue: str, patterns: Sequence[str], handler: Handler, *, transient: bool = False
    ) -> None: ...

    async def take_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Remove and return up to ``limit`` dead letters of ``queue`` (operations, tests)."""
        ...

    async def healthy(self) -> bool: ...

    async def close(self) -> None: ...
