"""HTTP routes of the model-trainer: parse, call the service, map results."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request

from common.db import SessionDep
from model_trainer.jobs import JobRunner, publish_promotion
from model_trainer.schemas import JobAccepted, JobStatus, ModelOut, PromotionOut, RegimeRow, TrainingConfig
from model_trainer.service import TrainerService, model_out

router = APIRouter(prefix="/model", tags=["model"])


def _service(request: Request) -> TrainerService:
    service: TrainerService = request.app.state.trainer
    return service


def _runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.jobs
    return runner


@router.post("/train", status_code=202, summary="Start a training job (returns at once)")
async def train(config: TrainingConfig, request: Request, session: SessionDep, tasks: BackgroundTasks) -> JobAccepted:
    job_id = await _service(request).submit(session, config)
    tasks.add_task(_runner(request).kick)  # after the commit: the runner then sees the job
    return JobAccepted(job_id=job_id, status="queued")


@router.get("/status/{job_id}", summary="A job's state, progress, learning curves and report summary")
async def status(job_id: uuid.UUID, request: Request, session: SessionDep) -> JobStatus:
    return await _service(request).status(session, job_id)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
async def cancel(job_id: uuid.UUID, request: Request, session: SessionDep, tasks: BackgroundTasks) -> JobAccepted:
    state = await _service(request).cancel(session, job_id)
    tasks.add_task(_runner(request).request_cancel, job_id)
    return JobAccepted(job_id=job_id, status=state)


@router.get("/models", summary="Registered models, newest first")
async def models(
    request: Request, session: SessionDep, status: Annotated[str | None, Query(max_length=16)] = None
) -> list[ModelOut]:
    return await _service(request).models(session, status)


@router.get("/models/{model_id}", summary="One registered model")
async def model(model_id: uuid.UUID, request: Request, session: SessionDep) -> ModelOut:
    return model_out(await _service(request).model(session, model_id))


@router.post("/models/{model_id}/promote", summary="Promote a model (publishes model.promoted.v1)")
async def promote(model_id: uuid.UUID, request: Request, session: SessionDep, tasks: BackgroundTasks) -> PromotionOut:
    record, previous = await _service(request).promote(session, model_id)
    out = model_out(record)
    tasks.add_task(publish_promotion, request.app.state.runtime, record)  # after the commit
    return PromotionOut(model=out, previous=previous)


@router.get("/models/{model_id}/regimes", summary="The model's regime per symbol and day")
async def regimes(
    model_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    symbol: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[RegimeRow]:
    return await _service(request).regimes(session, model_id, symbol, limit)
