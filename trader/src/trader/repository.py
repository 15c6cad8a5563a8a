"""All of the trader's SQL. One repository per session and account; it never commits."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import insert_ignoring_duplicates
from common.db import write_transaction as common_write_transaction
from common.db.models import BarRecord
from common.metrics import ORDERS, observe_db_write

from .models import (
    OPEN_STATUSES,
    TRANSITIONS,
    AccountSnapshot,
    AuditEntry,
    Fill,
    KillSwitch,
    NotificationRecord,
    Order,
    OrderStatus,
    Position,
    TraderAccount,
)


class IllegalTransition(Exception):
    """A status change the state machine does not allow (a bug, never a user error)."""


class TraderRepository:
    def __init__(self, session: AsyncSession, account: str) -> None:
        self.session = session
        self.account = account

    # --- orders -----------------------------------------------------------------------------

    async def order(self, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
        query = select(Order).where(Order.id == order_id, Order.account == self.account)
        if for_update:
            query = query.with_for_update()
        result: Order | None = (await self.session.execute(query)).scalar_one_or_none()
        return result

    async def order_by_key(self, idempotency_key: str) -> Order | None:
        query = select(Order).where(Order.account == self.account, Order.idempotency_key == idempotency_key)
        result: Order | None = (await self.session.execute(query)).scalar_one_or_none()
        return result

    async def order_by_broker_no(self, order_no: str) -> Order | None:
        query = (
            select(Order)
            .where(Order.account == self.account, Order.broker_order_no == order_no)
            .order_by(Order.created_at.desc())
            .limit(1)
            .with_for_update()
        )
        result: Order | None = (await self.session.execute(query)).scalar_one_or_none()
        return result

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        query = select(Order).where(Order.account == self.account, Order.status.in_([s.value for s in OPEN_STATUSES]))
        if symbol is not None:
            query = query.where(Order.symbol == symbol)
        return list((await self.session.execute(query.order_by(Order.created_at))).scalars())

    async def known_broker_order_numbers(self) -> set[str]:
        query = select(Order.broker_order_no).where(Order.account == self.account, Order.broker_order_no.is_not(None))
        return {str(no).lstrip("0") for no in (await self.session.execute(query)).scalars()}

    async def orders_since(self, since: datetime) -> int:
        query = select(func.count()).select_from(Order).where(Order.account == self.account, Order.created_at >= since)
        return int((await self.session.execute(query)).scalar_one())

    async def history(
        self,
        *,
        symbol: str | None,
        side: str | None,
        status: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Order], int]:
        conditions: list[Any] = [Order.account == self.account]
        if symbol:
            conditions.append(Order.symbol == symbol)
        if side:
            conditions.append(Order.side == side)
        if status:
            conditions.append(Order.status.in_(list(status)))
        if since:
            conditions.append(Order.created_at >= since)
        if until:
            conditions.append(Order.created_at < until)
        total = int(
            (await self.session.execute(select(func.count()).select_from(Order).where(*conditions))).scalar_one()
        )
        query = select(Order).where(*conditions).order_by(Order.created_at.desc(), Order.id).limit(limit).offset(offset)
        return list((await self.session.execute(query)).scalars()), total

    def add_order(self, order: Order) -> None:
        self.session.add(order)
        ORDERS.labels(order.status.lower()).inc()

    def transition(
        self, order: Order, to: OrderStatus, at: datetime, event: str, actor: str | None = None, **detail: Any
    ) -> None:
        """Move ``order`` along the state machine and write the audit entry in the same transaction."""
        current = order.state
        if to is not current and to not in TRANSITIONS[current]:
            raise IllegalTransition(f"order {order.id}: {current} -> {to} is not allowed")
        if to is current and to is not OrderStatus.PARTIALLY_FILLED:
            self.audit(event, at, order=order, actor=actor, **detail)
            return
        order.status = to.value
        order.updated_at = at
        ORDERS.labels(to.value.lower()).inc()
        self.session.add(
            AuditEntry(
                account=self.account,
                at=at,
                kind=event,
                order_id=order.id,
                from_status=current.value,
                to_status=to.value,
                actor=actor,
                detail=detail,
            )
        )

    def audit(
        self, kind: str, at: datetime, *, order: Order | None = None, actor: str | None = None, **detail: Any
    ) -> None:
        self.session.add(
            AuditEntry(
                account=self.account,
                at=at,
                kind=kind,
                order_id=order.id if order else None,
                from_status=order.status if order else None,
                to_status=order.status if order else None,
                actor=actor,
                detail=detail,
            )
        )

    async def events(self, order_id: uuid.UUID) -> list[AuditEntry]:
        query = select(AuditEntry).where(AuditEntry.order_id == order_id).order_by(AuditEntry.id)
        return list((await self.session.execute(query)).scalars())

    async def audit_entries(self, kind: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = select(AuditEntry).where(AuditEntry.account == self.account)
        if kind:
            query = query.where(AuditEntry.kind == kind)
        return list((await self.session.execute(query.order_by(AuditEntry.id.desc()).limit(limit))).scalars())

    # --- fills ------------------------------------------------------------------------------

    async def insert_fill(self, fill: dict[str, Any]) -> bool:
        """Insert-or-ignore by ``fill_id``; False when the fill was booked before."""
        statement = insert_ignoring_duplicates(Fill, self.session.get_bind().dialect.name).values(
            account=self.account, **fill
        )
        result = await self.session.execute(statement)
        return isinstance(result, CursorResult) and result.rowcount == 1

    async def fills(self, order_id: uuid.UUID) -> list[Fill]:
        query = select(Fill).where(Fill.order_id == order_id).order_by(Fill.filled_at, Fill.fill_id)
        return list((await self.session.execute(query)).scalars())

    # --- positions and the ledger -------------------------------------------------------------

    async def ledger(self, *, for_update: bool = False) -> TraderAccount | None:
        query = select(TraderAccount).where(TraderAccount.account == self.account)
        if for_update:
            query = query.with_for_update()
        result: TraderAccount | None = (await self.session.execute(query)).scalar_one_or_none()
        return result

    async def positions(self, *, held_only: bool = False) -> list[Position]:
        query = select(Position).where(Position.account == self.account)
        if held_only:
            query = query.where(Position.quantity != 0)
        return list((await self.session.execute(query.order_by(Position.symbol))).scalars())

    async def position(self, symbol: str, at: datetime) -> Position:
        """The position row of ``symbol``, created empty when there is none."""
        query = select(Position).where(Position.account == self.account, Position.symbol == symbol).with_for_update()
        position: Position | None = (await self.session.execute(query)).scalar_one_or_none()
        if position is None:
            position = Position(
                account=self.account, symbol=symbol, quantity=0, cost=0, realised_pnl=0, last_price=0, updated_at=at
            )
            self.session.add(position)
        return position

    async def mark(self, symbol: str, price: int, at: datetime) -> None:
        """Record the latest known price of a held symbol (for valuation)."""
        await self.session.execute(
            update(Position)
            .where(Position.account == self.account, Position.symbol == symbol)
            .values(last_price=price, updated_at=at)
        )

    # --- kill switch, snapshots, notifications ---------------------------------------------------

    async def kill_switch(self) -> KillSwitch | None:
        query = select(KillSwitch).where(KillSwitch.account == self.account)
        result: KillSwitch | None = (await self.session.execute(query)).scalar_one_or_none()
        return result

    async def set_kill_switch(self, engaged: bool, reason: str, actor: str, at: datetime) -> KillSwitch:
        row = await self.kill_switch()
        if row is None:
            row = KillSwitch(account=self.account, engaged=engaged, reason=reason, actor=actor, changed_at=at)
            self.session.add(row)
        else:
            row.engaged, row.reason, row.actor, row.changed_at = engaged, reason, actor, at
        self.audit("kill_switch", at, actor=actor, engaged=engaged, reason=reason)
        return row

    def add_snapshot(self, snapshot: AccountSnapshot) -> None:
        self.session.add(snapshot)

    async def latest_snapshot(self) -> AccountSnapshot | None:
        query = (
            select(AccountSnapshot)
            .where(AccountSnapshot.account == self.account)
            .order_by(AccountSnapshot.at.desc())
            .limit(1)
        )
        result: AccountSnapshot | None = (await self.session.execute(query)).scalar_one_or_none()
        return result


async def record_notification(session: AsyncSession, record: NotificationRecord) -> None:
    session.add(record)


def minute_ago(now: datetime) -> datetime:
    return now - timedelta(minutes=1)


@contextlib.asynccontextmanager
async def write_transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """``common.db.write_transaction`` (SQLite's write lock first), timed as the trader's DB writes."""
    with observe_db_write("trader"):
        async with common_write_transaction(sessionmaker) as session:
            yield session


async def snapshots(session: AsyncSession, account: str, limit: int) -> list[AccountSnapshot]:
    """The latest ``limit`` reconciliation snapshots, oldest first."""
    query = (
        select(AccountSnapshot)
        .where(AccountSnapshot.account == account)
        .order_by(AccountSnapshot.at.desc())
        .limit(limit)
    )
    return list(reversed((await session.execute(query)).scalars().all()))


async def all_fills(session: AsyncSession, account: str, limit: int) -> list[Fill]:
    query = select(Fill).where(Fill.account == account).order_by(Fill.filled_at.desc()).limit(limit)
    return list(reversed((await session.execute(query)).scalars().all()))


async def daily_closes(
    session: AsyncSession, symbols: Sequence[str], start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, int]]]:
    """Daily closes of ``symbols`` from the bar before ``start`` (the benchmark's base) to ``end``."""
    out: dict[str, list[tuple[datetime, int]]] = {}
    for symbol in symbols:
        base = (
            select(BarRecord.ts, BarRecord.close)
            .where(BarRecord.symbol == symbol, BarRecord.timeframe == "1d", BarRecord.ts <= start)
            .order_by(BarRecord.ts.desc())
            .limit(1)
        )
        within = (
            select(BarRecord.ts, BarRecord.close)
            .where(BarRecord.symbol == symbol, BarRecord.timeframe == "1d", BarRecord.ts > start, BarRecord.ts <= end)
            .order_by(BarRecord.ts)
            .limit(20_000)
        )
        rows = [*(await session.execute(base)).all(), *(await session.execute(within)).all()]
        out[symbol] = [(_aware(ts), int(close)) for ts, close in rows]
    return out


def _aware(ts: datetime) -> datetime:
    # SQLite hands back naive datetimes; the bars table stores UTC.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
