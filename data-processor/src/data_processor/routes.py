"""HTTP routes of the data processor: parse, call the service, shape the answer."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from common.db import SessionDep
from common.db.processing import ProcessingJob
from common.errors import InvalidInput
from data_processor import repository as repo
from data_processor.aggregation import BarRow
from data_processor.features import FEATURE_SETS
from data_processor.schemas import (
    FeatureRow,
    FeaturesPage,
    IndicatorPoint,
    IndicatorResponse,
    JobView,
    ProcessRequest,
)
from data_processor.service import JobRunner, Processor

SYMBOL_PATTERN = r"^Q?[0-9A-Z]{6}$"

router = APIRouter(tags=["data-processor"])

SymbolQuery = Annotated[str, Query(pattern=SYMBOL_PATTERN, description="KRX short code, e.g. 005930")]
TimeframeQuery = Annotated[Literal["1m", "1d"], Query(description="bar timeframe")]
StartQuery = Annotated[datetime | None, Query(description="first bar time (ISO 8601 with offset), inclusive")]
FeatureSetName = Literal["ta.v1", "mt-ohlcv-v1"]
EndQuery = Annotated[datetime | None, Query(description="last bar time (ISO 8601 with offset), inclusive")]


def _processor(request: Request) -> Processor:
    processor: Processor = request.app.state.processor
    return processor


def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.jobs
    return jobs


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidInput(
            f"{name} needs a time zone offset (e.g. 2024-01-02T09:00:00+09:00)", detail={name: str(value)}
        )
    return value


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start, end = _aware("start", start), _aware("end", end)
    if start is not None and end is not None and start > end:
        raise InvalidInput("start must not be after end", detail={"start": start.isoformat(), "end": end.isoformat()})
    return start, end


def _job_view(job: ProcessingJob) -> JobView:
    data = {name: getattr(job, name) for name in JobView.model_fields if name != "progress"}
    total, done = data["total"], data["done"]
    data["progress"] = 1.0 if not total else min(1.0, done / total)
    return JobView.model_validate(data)


@router.post("/data/process", status_code=202, response_model=JobView, summary="Recompute features (a background job)")
async def process(body: ProcessRequest, request: Request) -> JobView:
    job = await _jobs(request).submit(body.symbols, body.timeframe, body.start, body.end)
    return _job_view(job)


@router.get("/data/process/{job_id}", response_model=JobView, summary="A processing job and its progress")
async def job_status(job_id: uuid.UUID, request: Request, session: SessionDep) -> JobView:
    return _job_view(await _jobs(request).get(session, job_id))


@router.get("/features", summary="Stored features of a symbol, paged, as JSON or CSV", response_model=None)
async def features(
    session: SessionDep,
    symbol: SymbolQuery,
    timeframe: TimeframeQuery = "1d",
    start: StartQuery = None,
    end: EndQuery = None,
    cursor: Annotated[datetime | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
    format: Annotated[Literal["json", "csv"], Query(description="response format")] = "json",
    feature_set: Annotated[FeatureSetName, Query(description="ta.v1 (TA-Lib) or mt-ohlcv-v1 (the trainer's)")] = (
        "ta.v1"
    ),
) -> FeaturesPage | Response:
    start, end = _range(start, end)
    cursor = _aware("cursor", cursor)
    rows = await repo.read_features(session, symbol, timeframe, feature_set, start, end, cursor, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = rows[-1][0] if more and rows else None
    if format == "csv":
        return _csv(FEATURE_SETS[feature_set].names, rows, next_cursor)
    return FeaturesPage(
        symbol=symbol,
        timeframe=timeframe,
        feature_set=feature_set,
        rows=[FeatureRow(ts=ts, values=values) for ts, values in rows],
        next_cursor=next_cursor,
    )


def _csv(
    columns: tuple[str, ...], rows: list[tuple[datetime, dict[str, float | None]]], next_cursor: datetime | None
) -> Response:
    names = list(columns) + sorted({k for _, v in rows for k in v} - set(columns))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ts", *names])
    for ts, values in rows:
        writer.writerow([ts.isoformat(), *("" if values.get(n) is None else repr(values[n]) for n in names)])
    headers = {"x-next-cursor": next_cursor.isoformat()} if next_cursor else {}
    return Response(buffer.getvalue(), media_type="text/csv", headers=headers)


@router.get("/indicator/ma", response_model=IndicatorResponse, summary="Simple or exponential moving average")
async def moving_average(
    request: Request,
    session: SessionDep,
    symbol: SymbolQuery,
    window: Annotated[int, Query(ge=2, le=1_000, description="bars in the average")] = 20,
    kind: Annotated[Literal["sma", "ema"], Query(description="sma or ema")] = "sma",
    timeframe: TimeframeQuery = "1d",
    start: StartQuery = None,
    end: EndQuery = None,
) -> IndicatorResponse:
    start, end = _range(start, end)
    points = await _processor(request).indicator(session, symbol, timeframe, start, end, kind=kind, window=window)
    return _indicator(symbol, timeframe, kind, window, points)


@router.get("/indicator/rsi", response_model=IndicatorResponse, summary="Relative strength index (Wilder)")
async def relative_strength(
    request: Request,
    session: SessionDep,
    symbol: SymbolQuery,
    window: Annotated[int, Query(ge=2, le=1_000, description="RSI period in bars")] = 14,
    timeframe: TimeframeQuery = "1d",
    start: StartQuery = None,
    end: EndQuery = None,
) -> IndicatorResponse:
    start, end = _range(start, end)
    points = await _processor(request).indicator(session, symbol, timeframe, start, end, kind="rsi", window=window)
    return _indicator(symbol, timeframe, "rsi", window, points)


def _indicator(
    symbol: str, timeframe: str, name: str, window: int, points: list[tuple[BarRow, float | None]]
) -> IndicatorResponse:
    return IndicatorResponse(
        symbol=symbol,
        timeframe=timeframe,
        indicator=name,
        window=window,
        points=[IndicatorPoint(ts=bar.ts, close=bar.close, value=value) for bar, value in points],
    )
