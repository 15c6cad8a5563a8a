"""Exactly one active trader per account: a lease row in the database.

The holder renews it every ``ttl/3``; another replica can take it only once it has expired.
Both acquisition paths are single statements (insert-or-ignore, then a conditional update), so
two replicas racing on PostgreSQL or SQLite cannot both win. The lease runs on the wall clock,
never on the (possibly simulated) market clock.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import case, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock, SystemClock
from common.db import insert_ignoring_duplicates

from .models import TraderLease

log = structlog.get_logger(__name__)


class Lease:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        account: str,
        holder: str,
        ttl_seconds: float,
        clock: Clock | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.account = account
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock or SystemClock()
        self.held = False

    async def try_acquire(self) -> bool:
        """Take or renew the lease; True while this instance holds it."""
        now = self._clock.now()
        expires = now + self.ttl
        async with self._sessionmaker.begin() as session:
            insert = insert_ignoring_duplicates(TraderLease, session.get_bind().dialect.name).values(
                account=self.account, holder=self.holder, epoch=1, acquired_at=now, expires_at=expires
            )
            result = await session.execute(insert)
            won = isinstance(result, CursorResult) and result.rowcount == 1
            if not won:
                mine = TraderLease.holder == self.holder
                statement = (
                    update(TraderLease)
                    .where(TraderLease.account == self.account, mine | (TraderLease.expires_at < now))
                    .values(
                        holder=self.holder,
                        expires_at=expires,
                        epoch=case((mine, TraderLease.epoch), else_=TraderLease.epoch + 1),
                        acquired_at=case((mine, TraderLease.acquired_at), else_=now),
                    )
                )
                result = await session.execute(statement)
                won = isinstance(result, CursorResult) and result.rowcount == 1
        if won != self.held:
            log.info("trader.lease_acquired" if won else "trader.lease_lost", holder=self.holder)
        self.held = won
        return won

    async def release(self) -> None:
        """Let another replica take over at once (a clean shutdown)."""
        if not self.held:
            return
        self.held = False
        async with self._sessionmaker.begin() as session:
            await session.execute(
                update(TraderLease)
                .where(TraderLease.account == self.account, TraderLease.holder == self.holder)
                .values(expires_at=self._clock.now() - timedelta(seconds=1))
            )
        log.info("trader.lease_released", holder=self.holder)
