"""All of the inferencer's SQL: decisions (and their outbox state), stored features, the model registry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import insert_ignoring_duplicates
from common.db.models import FeatureRecord

from .engine import Bar
from .models import UNSENT, DecisionRecord


async def store_decision(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert-or-ignore by decision id; False when the decision was stored before."""
    statement = insert_ignoring_duplicates(DecisionRecord, session.get_bind().dialect.name).values(**values)
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def decision(session: AsyncSession, decision_id: uuid.UUID) -> DecisionRecord | None:
    return await session.get(DecisionRecord, decision_id)


async def latest_decision(
    session: AsyncSession, model_version: str, symbol: str, timeframe: str
) -> DecisionRecord | None:
    """The newest decision of one model on one symbol and timeframe."""
    query = (
        select(DecisionRecord)
        .where(
            DecisionRecord.model_version == model_version,
            DecisionRecord.symbol == symbol,
            DecisionRecord.timeframe == timeframe,
        )
        .order_by(DecisionRecord.feature_ts.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalars().first()


async def newer_decision_exists(session: AsyncSession, symbol: str, timeframe: str, than: datetime) -> bool:
    """Whether any model decided on a later bar of the symbol (an older decision must not trade then)."""
    query = (
        select(DecisionRecord.id)
        .where(DecisionRecord.symbol == symbol, DecisionRecord.timeframe == timeframe, DecisionRecord.feature_ts > than)
        .limit(1)
    )
    return (await session.execute(query)).first() is not None


async def supersede_unsent(session: AsyncSession, symbol: str, timeframe: str, before: datetime) -> int:
    """Mark the symbol's unsent decisions on bars before ``before`` as superseded; how many there were."""
    result = await session.execute(
        update(DecisionRecord)
        .where(
            DecisionRecord.symbol == symbol,
            DecisionRecord.timeframe == timeframe,
            DecisionRecord.feature_ts < before,
            DecisionRecord.trade_status.in_(UNSENT),
        )
        .values(trade_status="superseded", error="a decision on a later bar exists", next_attempt_at=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def record_trade(
    session: AsyncSession,
    decision_id: uuid.UUID,
    status: str,
    order_id: uuid.UUID | None,
    error: str | None,
    *,
    attempts: int | None = None,
    next_attempt_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {
        "trade_status": status[:32],
        "order_id": order_id,
        "error": error[:200] if error else None,
        "next_attempt_at": next_attempt_at,
    }
    if attempts is not None:
        values["attempts"] = attempts
    await session.execute(update(DecisionRecord).where(DecisionRecord.id == decision_id).values(**values))


async def due_decisions(session: AsyncSession, now: datetime, limit: int) -> list[DecisionRecord]:
    """Decisions the trader has not answered for whose next attempt is due, oldest bar first."""
    query = (
        select(DecisionRecord)
        .where(DecisionRecord.trade_status.in_(UNSENT))
        .where((DecisionRecord.next_attempt_at.is_(None)) | (DecisionRecord.next_attempt_at <= now))
        .order_by(DecisionRecord.feature_ts, DecisionRecord.id)
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def decisions(session: AsyncSession, symbol: str | None, limit: int) -> list[DecisionRecord]:
    query = select(DecisionRecord)
    if symbol:
        query = query.where(DecisionRecord.symbol == symbol)
    query = query.order_by(DecisionRecord.feature_ts.desc(), DecisionRecord.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def feature_bars(
    session: AsyncSession,
    symbol: str,
    timeframe: str,
    feature_set: str,
    *,
    before: datetime,
    since: datetime | None,
    extra: int,
) -> list[Bar]:
    """Stored features of one symbol before ``before``, oldest first: every bar from ``since`` on
    (none when ``since`` is None) plus the ``extra`` bars before that."""
    key = (
        FeatureRecord.symbol == symbol,
        FeatureRecord.timeframe == timeframe,
        FeatureRecord.feature_set == feature_set,
    )
    columns = (FeatureRecord.ts, FeatureRecord.values)
    bars: list[Bar] = []
    bound = before
    if since is not None:
        query = select(*columns).where(*key, FeatureRecord.ts >= since, FeatureRecord.ts < before)
        bars = [(ts, values) for ts, values in await session.execute(query.order_by(FeatureRecord.ts))]
        bound = since
    if extra > 0:
        query = select(*columns).where(*key, FeatureRecord.ts < bound).order_by(FeatureRecord.ts.desc()).limit(extra)
        bars = [(ts, values) for ts, values in reversed((await session.execute(query)).all())] + bars
    return bars


async def promoted_model(session: AsyncSession) -> tuple[str, str, str] | None:
    """``(model_id, version, artifact_uri)`` of the promoted model, or None (also when there is no registry yet).

    The registry belongs to the model-trainer; it is read with plain SQL so the inferencer
    does not import the trainer.
    """
    try:
        rows = (
            await session.execute(
                text(
                    "SELECT id, version, artifact_uri FROM models WHERE status = 'promoted' "
                    "ORDER BY promoted_at DESC, version DESC"
                )
            )
        ).all()
    except DBAPIError:
        await session.rollback()
        return None
    if not rows:
        return None
    # Several promoted rows should not happen; the most recently promoted wins if it does.
    model_id, version, uri = rows[0]
    return str(model_id), str(version), str(uri)
