"""The inbox: exactly-once effects on top of the bus's at-least-once delivery.

A consumer claims ``(consumer, message_id)`` in the same transaction as its effects. If the
claim already exists the message was applied before and is skipped; if the handler raises,
the transaction — claim included — rolls back, so the redelivery is processed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog
from sqlalchemy import delete
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus.port import D
from common.clock import Clock, SystemClock, ensure_utc
from common.metrics import INBOX_DUPLICATES, observe_db_write

from .models import ProcessedMessage
from .upsert import insert_ignoring_duplicates

log = structlog.get_logger(__name__)

InboxHandler = Callable[[AsyncSession, D], Awaitable[None]]


def idempotent(
    consumer: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    handler: InboxHandler[D],
    *,
    clock: Clock | None = None,
) -> Callable[[D], Awaitable[None]]:
    """Wrap ``handler`` so each message's effects are applied once per ``consumer``.

    The handler receives the session of the transaction that holds the claim; it must not
    commit. The bus acks only after this returns, i.e. after the commit.
    """
    if not consumer or len(consumer) > 128:
        raise ValueError("consumer must be 1 to 128 characters")
    clock = clock or SystemClock()

    async def handle(envelope: D) -> None:
        # The whole transaction is the write: claim, the handler's bulk writes, the commit.
        with observe_db_write(f"inbox:{envelope.kind}"):
            await apply(envelope)

    async def apply(envelope: D) -> None:
        async with sessionmaker.begin() as session:
            claim = insert_ignoring_duplicates(ProcessedMessage, session.get_bind().dialect.name).values(
                consumer=consumer, message_id=envelope.message_id, processed_at=clock.now()
            )
            # On PostgreSQL a concurrent claim of the same key waits here until the other
            # transaction ends, then either conflicts (it committed) or wins (it rolled back).
            result = await session.execute(claim)
            if not isinstance(result, CursorResult) or result.rowcount == 0:
                log.info(
                    "bus.duplicate_skipped",
                    consumer=consumer,
                    message_id=str(envelope.message_id),
                    kind=envelope.kind,
                    correlation_id=envelope.correlation_id,
                )
                INBOX_DUPLICATES.labels(consumer).inc()
                return
            await handler(session, envelope)

    return handle


async def prune_inbox(sessionmaker: async_sessionmaker[AsyncSession], older_than: datetime) -> int:
    """Delete inbox claims processed before ``older_than``; returns how many were removed.

    Keep claims longer than any redelivery can take (dead-letter replays included).
    """
    cutoff = ensure_utc(older_than)
    async with sessionmaker.begin() as session:
        result = await session.execute(delete(ProcessedMessage).where(ProcessedMessage.processed_at < cutoff))
    removed = result.rowcount if isinstance(result, CursorResult) else 0
    log.info("db.inbox_pruned", removed=removed, older_than=cutoff.isoformat())
    return removed
