"""The model-trainer's tables (``models``, ``training_jobs``, ``training_progress``) and all
its SQL. Tables change only through migration ``0004``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base
from common.db.models import JsonDocument

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
MODEL_STATES = ("registered", "promoted", "retired")
ACTIVE_JOB_STATES = ("queued", "running")


class ModelRecord(Base):
    """One registered model version: where its artifact is and what produced it."""

    __tablename__ = "models"
    __table_args__ = (CheckConstraint("status IN ('registered', 'promoted', 'retired')", name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    promoted_at: Mapped[datetime | None]
    data_hash: Mapped[str] = mapped_column(String(64))
    symbols: Mapped[list[str]] = mapped_column(JsonDocument)
    ranges: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    feature_set: Mapped[str] = mapped_column(String(64))
    feature_names: Mapped[list[str]] = mapped_column(JsonDocument)
    timeframe: Mapped[str] = mapped_column(String(4))
    seed: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    code_version: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    artifact_uri: Mapped[str] = mapped_column(Text)


class TrainingJobRecord(Base):
    """A persisted training job; ``progress`` is the latest snapshot, the series is in ``training_progress``."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')", name="status"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    progress: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    report: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)
    model_ids: Mapped[list[str]] = mapped_column(JsonDocument)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    interrupted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class TrainingProgressRecord(Base):
    """One point of a job's learning curves."""

    __tablename__ = "training_progress"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorded_at: Mapped[datetime]
    fold: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(BigInteger)
    episodes: Mapped[int] = mapped_column(BigInteger)
    elapsed: Mapped[float] = mapped_column(Float)
    reward: Mapped[float | None] = mapped_column(Float)
    policy_loss: Mapped[float | None] = mapped_column(Float)
    value_loss: Mapped[float | None] = mapped_column(Float)
    entropy: Mapped[float | None] = mapped_column(Float)
    val_sharpe: Mapped[float | None] = mapped_column(Float)


# -- jobs ----------------------------------------------------------------------------------------


async def create_job(
    session: AsyncSession, job_id: uuid.UUID, config: dict[str, Any], trigger: str, now: datetime
) -> TrainingJobRecord:
    job = TrainingJobRecord(
        id=job_id,
        status="queued",
        trigger=trigger,
        config=config,
        progress={},
        report=None,
        model_ids=[],
        error=None,
        attempts=0,
        cancel_requested=False,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    await session.flush()
    return job


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> TrainingJobRecord | None:
    return await session.get(TrainingJobRecord, job_id)


async def list_jobs(session: AsyncSession, limit: int = 50) -> Sequence[TrainingJobRecord]:
    query = select(TrainingJobRecord).order_by(TrainingJobRecord.created_at.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def next_queued_job(session: AsyncSession) -> TrainingJobRecord | None:
    query = (
        select(TrainingJobRecord)
        .where(TrainingJobRecord.status == "queued")
        .order_by(TrainingJobRecord.created_at)
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def active_jobs(session: AsyncSession) -> Sequence[TrainingJobRecord]:
    query = select(TrainingJobRecord).where(TrainingJobRecord.status.in_(ACTIVE_JOB_STATES))
    return (await session.scalars(query)).all()


async def update_job(session: AsyncSession, job_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(TrainingJobRecord).where(TrainingJobRecord.id == job_id).values(**values))


async def add_progress(session: AsyncSession, job_id: uuid.UUID, seq: int, point: dict[str, Any]) -> None:
    session.add(TrainingProgressRecord(job_id=job_id, seq=seq, **point))
    await session.flush()


async def next_progress_seq(session: AsyncSession, job_id: uuid.UUID) -> int:
    last = await session.scalar(
        select(func.max(TrainingProgressRecord.seq)).where(TrainingProgressRecord.job_id == job_id)
    )
    return 0 if last is None else int(last) + 1


async def progress_points(
    session: AsyncSession, job_id: uuid.UUID, limit: int = 5000
) -> Sequence[TrainingProgressRecord]:
    query = (
        select(TrainingProgressRecord)
        .where(TrainingProgressRecord.job_id == job_id)
        .order_by(TrainingProgressRecord.seq)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


# -- models --------------------------------------------------------------------------------------


async def add_model(session: AsyncSession, model: ModelRecord) -> None:
    session.add(model)
    await session.flush()


async def get_model(session: AsyncSession, model_id: uuid.UUID) -> ModelRecord | None:
    return await session.get(ModelRecord, model_id)


async def list_models(session: AsyncSession, status: str | None = None, limit: int = 100) -> Sequence[ModelRecord]:
    query = select(ModelRecord).order_by(ModelRecord.created_at.desc()).limit(limit)
    if status is not None:
        query = query.where(ModelRecord.status == status)
    return (await session.scalars(query)).all()


async def promoted_model(session: AsyncSession) -> ModelRecord | None:
    query = select(ModelRecord).where(ModelRecord.status == "promoted").limit(1)
    return (await session.scalars(query)).first()


async def promote(session: AsyncSession, model: ModelRecord, now: datetime) -> None:
    """The one promoted model: the incumbent is retired in the same transaction."""
    await session.execute(
        update(ModelRecord).where(ModelRecord.status == "promoted", ModelRecord.id != model.id).values(status="retired")
    )
    model.status = "promoted"
    model.promoted_at = now
    await session.flush()
