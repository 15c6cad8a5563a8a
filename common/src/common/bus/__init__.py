"""The message bus: a port with an in-memory and a RabbitMQ adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.bus.port import DeadLetter, Handler, MessageBus
from common.bus.topics import topic_matches

if TYPE_CHECKING:
    from common.settings import RuntimeSettings

__all__ = ["DeadLetter", "Handler", "MessageBus", "create_bus", "topic_matches"]


def create_bus(settings: RuntimeSettings, name: str = "tradebot") -> MessageBus:
    """The RabbitMQ bus when an AMQP URL is configured, else the in-process one."""
    from common.bus.memory import InMemoryBus
    from common.bus.rabbitmq import RabbitMQBus

    if settings.amqp_url is None:
        return InMemoryBus(
            prefetch=settings.bus_prefetch,
            max_attempts=settings.bus_max_attempts,
            retry_delay=settings.bus_retry_delay_seconds,
            drain_timeout=settings.shutdown_drain_timeout_seconds,
        )
    return RabbitMQBus(
        settings.amqp_url.get_secret_value(),
        exchange=settings.bus_exchange,
        prefetch=settings.bus_prefetch,
        max_attempts=settings.bus_max_attempts,
        retry_delay=settings.bus_retry_delay_seconds,
        drain_timeout=settings.shutdown_drain_timeout_seconds,
        connection_name=name,
        queue_prefix=settings.bus_queue_prefix,
    )
