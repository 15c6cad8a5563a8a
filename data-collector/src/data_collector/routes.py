"""HTTP only: parse, call the collector service, map results."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from common.db import SessionDep
from common.errors import InvalidInput
from data_collector.schemas import (
    CollectRequest,
    EventList,
    JobList,
    JobStatus,
    JobView,
    MarketView,
)
from data_collector.service import MAX_REFRESH_SYMBOLS, CollectorService

SYMBOL_PATTERN = re.compile(r"^Q?[0-9A-Z]{6}$")


def collector_of(request: Request) -> CollectorService:
    collector: CollectorService = request.app.state.collector
    return collector


CollectorDep = Annotated[CollectorService, Depends(collector_of)]


def build_router() -> APIRouter:
    router = APIRouter(tags=["data collection"])

    @router.post(
        "/data/collect",
        response_model=JobView,
        status_code=status.HTTP_202_ACCEPTED,
        summary="Start a collection job (or get the job already answering the same request)",
        responses={
            200: {"model": JobView, "description": "the same request already has a job: that job"},
            409: {"description": "another stream job holds the real-time session"},
            422: {"description": "invalid request"},
            503: {"description": "KIS credentials are not configured"},
        },
    )
    async def collect(
        collector: CollectorDep,
        response: Response,
        request: Annotated[CollectRequest, Body(discriminator="kind")],
    ) -> JobView:
        job, created = await collector.submit(request)
        if not created:
            response.status_code = status.HTTP_200_OK
        return job

    @router.get("/data/collect", response_model=JobList, summary="Collection jobs, newest first")
    async def list_jobs(
        collector: CollectorDep,
        session: SessionDep,
        status_filter: Annotated[list[JobStatus] | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> JobList:
        return JobList(jobs=await collector.list_jobs(session, status_filter, limit))

    @router.get(
        "/data/collect/{job_id}",
        response_model=JobView,
        summary="One job: status, progress (symbols, chunks, bars, ETA) and its latest events",
        responses={404: {"description": "no such job"}},
    )
    async def get_job(job_id: uuid.UUID, collector: CollectorDep, session: SessionDep) -> JobView:
        return await collector.get(session, job_id)

    @router.get(
        "/data/collect/{job_id}/events",
        response_model=EventList,
        summary="A job's events (gaps, reconnects, retries, interruptions), newest first",
        responses={404: {"description": "no such job"}},
    )
    async def job_events(
        job_id: uuid.UUID,
        collector: CollectorDep,
        session: SessionDep,
        kind: Annotated[list[str] | None, Query(max_length=20)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventList:
        return EventList(events=await collector.events(session, job_id, kind, limit))

    @router.post(
        "/data/collect/{job_id}/cancel",
        response_model=JobView,
        status_code=status.HTTP_202_ACCEPTED,
        summary="Cancel a job: at once if it is not running, else at its next chunk boundary",
        responses={404: {"description": "no such job"}, 409: {"description": "the job already finished"}},
    )
    async def cancel_job(job_id: uuid.UUID, collector: CollectorDep) -> JobView:
        return await collector.cancel(job_id)

    @router.get(
        "/data/market",
        response_model=MarketView,
        summary="Latest snapshot per symbol: price, change, volume, book top",
    )
    async def market(
        collector: CollectorDep,
        session: SessionDep,
        symbols: Annotated[
            list[str] | None,
            Query(description="repeat or comma-separate; absent: every symbol seen", max_length=200),
        ] = None,
        refresh: Annotated[bool, Query(description="ask KIS for a fresh quote and book first")] = False,
    ) -> MarketView:
        wanted = _split(symbols)
        if refresh and not wanted:
            raise InvalidInput("refresh needs symbols")
        if refresh and len(wanted) > MAX_REFRESH_SYMBOLS:
            raise InvalidInput(f"refresh at most {MAX_REFRESH_SYMBOLS} symbols at a time")
        return await collector.market(session, wanted or None, refresh)

    return router


def _split(symbols: list[str] | None) -> list[str]:
    wanted = {part.strip().upper() for value in symbols or () for part in value.split(",") if part.strip()}
    invalid = sorted(s for s in wanted if not SYMBOL_PATTERN.match(s))
    if invalid:
        raise InvalidInput("not KRX short codes (6 characters, e.g. 005930)", detail={"symbols": invalid[:20]})
    return sorted(wanted)
