"""All SQL of the data collector: jobs, events, market snapshots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import insert_ignoring_duplicates
from common.db.collection import CollectionEvent, CollectionJob, MarketSnapshot

TRADE_COLUMNS = ("price", "change", "volume", "traded_at")
BOOK_COLUMNS = ("best_ask", "best_ask_quantity", "best_bid", "best_bid_quantity", "book_at")


async def insert_job_unless_active(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the job unless one with the same ``active_key`` exists; True when inserted."""
    statement = insert_ignoring_duplicates(CollectionJob, session.get_bind().dialect.name).values(**values)
    result = await session.execute(statement)
    return isinstance(result, CursorResult) and result.rowcount == 1


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> CollectionJob | None:
    return await session.get(CollectionJob, job_id, populate_existing=True)


async def lock_job(session: AsyncSession, job_id: uuid.UUID) -> CollectionJob | None:
    """The job, read after taking its write lock: the row lock on PostgreSQL, the database's on SQLite.

    Writing first matters on SQLite: a transaction that read before another one committed cannot
    upgrade to a writer afterwards (WAL answers SQLITE_BUSY at once, without waiting).
    """
    await session.execute(
        update(CollectionJob).where(CollectionJob.id == job_id).values(updated_at=CollectionJob.updated_at)
    )
    return await get_job(session, job_id)


async def get_active_job(session: AsyncSession, key: str) -> CollectionJob | None:
    result = await session.execute(select(CollectionJob).where(CollectionJob.active_key == key))
    return result.scalar_one_or_none()


async def list_jobs(session: AsyncSession, statuses: Sequence[str] | None, limit: int) -> Sequence[CollectionJob]:
    query = select(CollectionJob).order_by(CollectionJob.created_at.desc()).limit(limit)
    if statuses:
        query = query.where(CollectionJob.status.in_(statuses))
    return (await session.execute(query)).scalars().all()


async def jobs_in(session: AsyncSession, statuses: Sequence[str], kind: str | None = None) -> Sequence[CollectionJob]:
    query = select(CollectionJob).where(CollectionJob.status.in_(statuses)).order_by(CollectionJob.created_at)
    if kind is not None:
        query = query.where(CollectionJob.kind == kind)
    return (await session.execute(query)).scalars().all()


async def update_job(session: AsyncSession, job_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(CollectionJob).where(CollectionJob.id == job_id).values(**values))


async def mark_running_interrupted(session: AsyncSession, now: datetime) -> list[uuid.UUID]:
    """Jobs a previous process left ``running`` become ``interrupted``; returns their ids."""
    statement = (
        update(CollectionJob)
        .where(CollectionJob.status == "running")
        .values(status="interrupted", updated_at=now)
        .returning(CollectionJob.id)
    )
    return list((await session.execute(statement)).scalars().all())


async def add_event(
    session: AsyncSession,
    job_id: uuid.UUID | None,
    kind: str,
    at: datetime,
    detail: dict[str, Any],
    symbol: str | None = None,
) -> None:
    session.add(CollectionEvent(job_id=job_id, kind=kind, at=at, symbol=symbol, detail=detail))


async def list_events(
    session: AsyncSession, job_id: uuid.UUID, limit: int, kinds: Sequence[str] | None = None
) -> Sequence[CollectionEvent]:
    query = (
        select(CollectionEvent)
        .where(CollectionEvent.job_id == job_id)
        .order_by(CollectionEvent.at.desc(), CollectionEvent.id.desc())
        .limit(limit)
    )
    if kinds:
        query = query.where(CollectionEvent.kind.in_(kinds))
    return (await session.execute(query)).scalars().all()


async def upsert_snapshots(session: AsyncSession, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Insert or update snapshot rows, touching only ``columns`` (plus source and time) of existing ones."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert(MarketSnapshot) if dialect == "postgresql" else sqlite.insert(MarketSnapshot)
    statement = insert.values(list(rows))
    changed = {name: statement.excluded[name] for name in (*columns, "source", "updated_at")}
    await session.execute(statement.on_conflict_do_update(index_elements=["symbol"], set_=changed))


async def list_snapshots(session: AsyncSession, symbols: Sequence[str] | None) -> Sequence[MarketSnapshot]:
    query = select(MarketSnapshot).order_by(MarketSnapshot.symbol)
    if symbols:
        query = query.where(MarketSnapshot.symbol.in_(symbols))
    return (await session.execute(query)).scalars().all()
