"""All of the inferencer's SQL: decisions, and the model registry (the trainer's ``models`` table)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import insert_ignoring_duplicates

from .models import DecisionRecord


async def store_decision(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert-or-ignore by decision id; False when the decision was stored before."""
    statement = insert_ignoring_duplicates(DecisionRecord, session.get_bind().dialect.name).values(**values)
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


async def record_trade(
    session: AsyncSession, decision: uuid.UUID, status: str, order_id: uuid.UUID | None, error: str | None
) -> None:
    await session.execute(
        update(DecisionRecord)
        .where(DecisionRecord.id == decision)
        .values(trade_status=status[:32], order_id=order_id, error=error[:200] if error else None)
    )


async def decisions(session: AsyncSession, symbol: str | None, limit: int) -> list[DecisionRecord]:
    query = select(DecisionRecord)
    if symbol:
        query = query.where(DecisionRecord.symbol == symbol)
    query = query.order_by(DecisionRecord.feature_ts.desc(), DecisionRecord.id).limit(limit)
    return list((await session.execute(query)).scalars())


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
