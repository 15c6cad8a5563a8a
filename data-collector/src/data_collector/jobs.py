"""Collection jobs: persisted, resumable, cancellable runs of backfills and streams.

A job is a row in ``collection_jobs``. Its task publishes one chunk at a time and commits the
chunk's checkpoint right after the bus confirmed it, so a job interrupted anywhere resumes at
the first unconfirmed chunk. A chunk's message id is derived from the job and the chunk, so a
chunk published again after a resume carries the same id and consumers' inboxes drop it.
Cancellation is honoured at chunk boundaries. On start, jobs a previous process left running
are marked ``interrupted`` (with an event) and resumed from their checkpoints.

Jobs run on the broker's clock (``KisAccess.clock``), not the system's: a simulator may replay
the past or run accelerated, and a stream's ``until``, the KST day of a backfill, job and event
times and the gaps between ticks all belong to the market's time line.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter
from pydantic import ValidationError

from common.clock import KST, Clock, kst_datetime, to_kst
from common.contracts import Bar, Envelope, MarketBarV1
from common.db.collection import CollectionJob
from common.errors import Conflict, InvalidInput, NotFound, RateLimited, Rejected, Retryable
from common.kis import DailyBar, KisClient, MinuteBar, TokenIssueThrottled
from common.krx import SESSION_OPEN
from common.krx_calendar import KrxCalendar
from common.runtime import Runtime
from data_collector import repository as repo
from data_collector.kis import KisAccess
from data_collector.schemas import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    BackfillRequest,
    StreamRequest,
    idempotency_key,
)
from data_collector.settings import DataCollectorSettings
from data_collector.state import JobCancelled, RunState
from data_collector.streams import TickStream

log = structlog.get_logger(__name__)

PRODUCER = "data-collector"
CHUNK_ATTEMPTS = 4
MAX_RETRY_DELAY_SECONDS = 30.0
GAP_DAYS_SHOWN = 50

BARS_PUBLISHED = Counter("tradebot_collector_bars_published_total", "Bars published by the collector", ["timeframe"])
JOBS_FINISHED = Counter("tradebot_collector_jobs_finished_total", "Collection jobs finished", ["kind", "status"])


@dataclass(frozen=True)
class Chunk:
    """One request's worth of bars: a symbol, a timeframe and a KST day range."""

    symbol: str
    timeframe: str
    start: date
    end: date

    def message_id(self, job_id: uuid.UUID) -> uuid.UUID:
        return uuid.uuid5(job_id, f"bar:{self.symbol}:{self.timeframe}:{self.start}:{self.end}")


def daily_windows(start: date, end: date, days: int) -> list[tuple[date, date]]:
    """``[start, end]`` cut into consecutive windows of ``days`` calendar days (the last one shorter)."""
    windows: list[tuple[date, date]] = []
    cursor = start
    while cursor <= end:
        upto = min(end, cursor + timedelta(days=days - 1))
        windows.append((cursor, upto))
        cursor = upto + timedelta(days=1)
    return windows


def plan(request: BackfillRequest, today: date, chunk_days: int) -> list[Chunk]:
    """Every chunk of a backfill, in the order they are collected (symbol by symbol)."""
    chunks: list[Chunk] = []
    for symbol in request.symbols:
        for timeframe in request.timeframes:
            if timeframe == "1d":
                end = min(request.end, today)
                windows = daily_windows(request.start, end, chunk_days) if request.start <= end else []
                chunks.extend(Chunk(symbol, timeframe, a, b) for a, b in windows)
            elif request.start <= today <= request.end:
                # KIS serves one-minute bars of the current session only (inquire-time-itemchartprice).
                chunks.append(Chunk(symbol, timeframe, today, today))
    return chunks


def daily_bar(symbol: str, row: DailyBar) -> Bar:
    assert row.date is not None
    return Bar(
        symbol=symbol,
        timeframe="1d",
        ts=kst_datetime(row.date, SESSION_OPEN),
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,
        volume=row.volume,
        value=row.traded_value or None,
    )


def minute_bar(symbol: str, row: MinuteBar) -> Bar:
    # The row's traded value is the day's running total, not the minute's: left out.
    return Bar(
        symbol=symbol,
        timeframe="1m",
        ts=row.at,
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,
        volume=row.volume,
    )


class JobManager:
    """Submits, runs, resumes and cancels collection jobs; every task is tracked and stopped on close."""

    def __init__(
        self, runtime: Runtime, settings: DataCollectorSettings, kis: KisAccess, calendar: KrxCalendar
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.kis = kis
        self.calendar = calendar
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._cancel: dict[uuid.UUID, asyncio.Event] = {}
        self._slots = asyncio.Semaphore(settings.max_concurrent_jobs)
        self._closing = False

    @property
    def clock(self) -> Clock:
        """The market's clock: the broker's (a simulator's, in process or followed), else the runtime's."""
        return self.kis.clock

    def today(self) -> date:
        """The broker's current KST day (the simulator's market may live in another time)."""
        return to_kst(self.clock.now()).date()

    # --- submission ---------------------------------------------------------------------------

    async def submit(self, request: BackfillRequest | StreamRequest) -> tuple[CollectionJob, bool]:
        """The job for ``request``: a new one (True), or the existing one with the same key (False)."""
        key = idempotency_key(request)
        self._validate(request)
        self.kis.require_credentials()
        now = self.clock.now()
        job_id = uuid.uuid4()
        totals = self._totals(request)
        values: dict[str, Any] = {
            "id": job_id,
            "idempotency_key": key,
            "active_key": key,
            "kind": request.kind,
            "status": "queued",
            "params": request.model_dump(mode="json"),
            "symbols_total": len(request.symbols),
            "symbols_done": 0,
            "chunks_total": totals,
            "chunks_done": 0,
            "bars_published": 0,
            "ticks_published": 0,
            "current_symbol": None,
            "current_day": None,
            "checkpoint": {},
            "cancel_requested": False,
            "resumes": 0,
            "error": None,
            "created_at": now,
            "updated_at": now,
            "run_started_at": None,
            "run_chunks_at_start": 0,
            "finished_at": None,
        }
        for _ in range(3):
            async with self.runtime.sessionmaker.begin() as session:
                created = await repo.insert_job_unless_active(session, values)
                if created and isinstance(request, StreamRequest):
                    await self._refuse_second_stream(session, job_id)  # raising rolls the insert back
                job = await (repo.get_job(session, job_id) if created else repo.get_active_job(session, key))
            if job is not None:
                break
            # The active job with this key finished as failed/cancelled between insert and read.
        else:
            raise Conflict("the same request is being submitted concurrently; try again")
        if created:
            log.info("data_collector.job_submitted", job_id=str(job.id), kind=job.kind, symbols=job.symbols_total)
            self.launch(job.id)
        else:
            log.info("data_collector.job_reused", job_id=str(job.id), status=job.status)
        return job, created

    def _validate(self, request: BackfillRequest | StreamRequest) -> None:
        settings = self.settings
        if isinstance(request, BackfillRequest):
            if len(request.symbols) > settings.max_backfill_symbols:
                raise InvalidInput(f"at most {settings.max_backfill_symbols} symbols per backfill")
            if (request.end - request.start).days > 366 * settings.max_backfill_years:
                raise InvalidInput(f"a backfill spans at most {settings.max_backfill_years} years")
            if request.start > self.today():
                raise InvalidInput(f"start {request.start} is in the future")
            return
        if request.until is not None and request.until <= self.clock.now():
            raise InvalidInput("until is in the past")
        cap = self.kis.settings().ws_max_subscriptions
        registrations = len(request.symbols) * len(request.channels)
        if registrations > cap:
            raise InvalidInput(f"{registrations} real-time registrations requested; this session allows {cap}")

    def _totals(self, request: BackfillRequest | StreamRequest) -> int:
        if isinstance(request, BackfillRequest):
            return len(plan(request, self.today(), self.settings.daily_chunk_days))
        return 0

    async def _refuse_second_stream(self, session: Any, job_id: uuid.UUID) -> None:
        # KIS allows one WebSocket session per appkey: a second stream would evict the first.
        for other in await repo.jobs_in(session, ["queued", "running", "interrupted"], kind="stream"):
            if other.id != job_id:
                raise Conflict(
                    f"stream job {other.id} is {other.status}; cancel it first (one real-time session per appkey)",
                    detail={"job_id": str(other.id)},
                )

    # --- lifecycle ----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Mark jobs a previous process left running as interrupted and resume what is unfinished."""
        now = self.clock.now()
        async with self.runtime.sessionmaker.begin() as session:
            interrupted = await repo.mark_running_interrupted(session, now)
            for job_id in interrupted:
                await repo.add_event(
                    session, job_id, "interrupted", now, {"reason": "the service stopped while the job was running"}
                )
            pending = await repo.jobs_in(session, ["queued", "interrupted"])
        if interrupted:
            log.warning("data_collector.jobs_interrupted", count=len(interrupted))
        if self.settings.resume_on_start:
            for job in pending:
                self.launch(job.id)

    def launch(self, job_id: uuid.UUID) -> None:
        if self._closing or job_id in self._tasks:
            return
        self._cancel.setdefault(job_id, asyncio.Event())
        task = asyncio.create_task(self._execute(job_id), name=f"collect-{job_id}")
        self._tasks[job_id] = task

        def forget(_: asyncio.Task[None]) -> None:
            self._tasks.pop(job_id, None)
            self._cancel.pop(job_id, None)

        task.add_done_callback(forget)

    async def cancel(self, job_id: uuid.UUID) -> CollectionJob:
        """Ask a job to stop; a job not running here stops at once, a running one at its next chunk."""
        now = self.clock.now()
        async with self.runtime.sessionmaker.begin() as session:
            job = await repo.lock_job(session, job_id)
            if job is None:
                raise NotFound(f"no collection job {job_id}")
            if job.status in FINISHED_STATUSES:
                if job.status == "cancelled":
                    return job
                raise Conflict(f"job {job_id} is already {job.status}", detail={"status": job.status})
            if job_id not in self._tasks and job.status in ("queued", "interrupted"):
                await repo.update_job(session, job_id, **self._finished_values("cancelled", now))
                await repo.add_event(session, job_id, "cancelled", now, {"reason": "cancelled before it ran"})
            else:
                await repo.update_job(session, job_id, cancel_requested=True, updated_at=now)
            job = await repo.get_job(session, job_id)
            assert job is not None
        event = self._cancel.get(job_id)
        if event is not None:
            event.set()
        log.info("data_collector.job_cancel_requested", job_id=str(job_id), status=job.status)
        return job

    async def wait(self, job_id: uuid.UUID | None = None, timeout: float | None = None) -> None:
        """Wait for one job's task (or all of them) to end (tests, benchmarks)."""
        tasks = [self._tasks[job_id]] if job_id in self._tasks else [] if job_id else list(self._tasks.values())
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every job task; each records itself as interrupted and resumes on the next start."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("data_collector.jobs_not_stopped", count=len(pending), timeout=timeout)

    # --- running ------------------------------------------------------------------------------

    async def _execute(self, job_id: uuid.UUID) -> None:
        cancel = self._cancel.setdefault(job_id, asyncio.Event())
        kind = "unknown"
        try:
            async with self.runtime.sessionmaker() as session:
                job = await repo.get_job(session, job_id)
            if job is None or job.status in FINISHED_STATUSES:
                return
            kind = job.kind
            if kind == "stream":
                job = await self._start(job_id)
                if job is not None:
                    await TickStream(self, job, cancel).run()
            else:
                async with self._slots:
                    job = await self._start(job_id)
                    if job is not None:
                        await self._run_backfill(job, cancel)
            if job is not None:
                await self._finish(job_id, "completed")
        except JobCancelled:
            await self._finish(job_id, "cancelled")
        except asyncio.CancelledError:
            await self._interrupt(job_id)
            raise
        except Exception as exc:
            log.exception("data_collector.job_failed", job_id=str(job_id), kind=kind)
            message = exc.message if isinstance(exc, Rejected | Retryable) else f"{type(exc).__name__}: {exc}"
            await self._finish(job_id, "failed", error=message[:2000])

    async def _start(self, job_id: uuid.UUID) -> CollectionJob | None:
        now = self.clock.now()
        async with self.runtime.sessionmaker.begin() as session:
            job = await repo.lock_job(session, job_id)
            if job is None or job.status in FINISHED_STATUSES:
                return None
            if job.cancel_requested:
                await repo.update_job(session, job_id, **self._finished_values("cancelled", now))
                return None
            resumed = job.status == "interrupted"
            if resumed:
                detail: dict[str, Any] = {"chunks_done": job.chunks_done, "chunks_total": job.chunks_total}
                if job.kind == "stream":
                    detail["gap_from"] = job.updated_at.isoformat()
                    await repo.add_event(
                        session,
                        job_id,
                        "gap",
                        now,
                        {"from": job.updated_at.isoformat(), "to": now.isoformat(), "reason": "job interrupted"},
                    )
                await repo.add_event(session, job_id, "resumed", now, detail)
            await repo.update_job(
                session,
                job_id,
                status="running",
                run_started_at=now,
                run_chunks_at_start=job.chunks_done,
                resumes=job.resumes + int(resumed),
                updated_at=now,
            )
            job = await repo.get_job(session, job_id)
        if job is not None:
            log.info("data_collector.job_started", job_id=str(job_id), kind=job.kind, resumed=resumed)
        return job

    def _finished_values(self, status: str, now: datetime, error: str | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {"status": status, "finished_at": now, "updated_at": now, "error": error}
        if status not in ACTIVE_STATUSES:
            # Failed and cancelled jobs no longer answer for their request: asking again starts afresh.
            values["active_key"] = None
        return values

    async def _finish(self, job_id: uuid.UUID, status: str, error: str | None = None) -> None:
        now = self.clock.now()
        async with self.runtime.sessionmaker.begin() as session:
            job = await repo.lock_job(session, job_id)
            if job is None:
                return
            values = self._finished_values(status, now, error)
            if status == "completed":
                values["symbols_done"] = job.symbols_total
                values["current_symbol"] = None
            await repo.update_job(session, job_id, **values)
            if error is not None:
                await repo.add_event(session, job_id, "error", now, {"message": error})
        JOBS_FINISHED.labels(job.kind, status).inc()
        log.info("data_collector.job_finished", job_id=str(job_id), status=status, error=error)

    async def _interrupt(self, job_id: uuid.UUID) -> None:
        now = self.clock.now()
        try:
            async with self.runtime.sessionmaker.begin() as session:
                job = await repo.lock_job(session, job_id)
                if job is None or job.status != "running":
                    return
                await repo.update_job(session, job_id, status="interrupted", updated_at=now)
                await repo.add_event(session, job_id, "interrupted", now, {"reason": "the service is stopping"})
        except Exception:
            # The next start marks it interrupted anyway (it is still ``running``).
            log.exception("data_collector.job_interrupt_not_recorded", job_id=str(job_id))
        log.warning("data_collector.job_interrupted", job_id=str(job_id))

    async def check_cancel(self, job_id: uuid.UUID, cancel: asyncio.Event) -> None:
        """Raise ``JobCancelled`` if this job was asked to stop (here or through another replica)."""
        if cancel.is_set():
            raise JobCancelled
        async with self.runtime.sessionmaker() as session:
            job = await repo.get_job(session, job_id)
        if job is None or job.cancel_requested:
            raise JobCancelled

    async def record(
        self, job_id: uuid.UUID | None, kind: str, detail: dict[str, Any], symbol: str | None = None
    ) -> None:
        async with self.runtime.sessionmaker.begin() as session:
            await repo.add_event(session, job_id, kind, self.clock.now(), detail, symbol)
        log.info("data_collector.job_event", job_id=str(job_id), kind=kind, symbol=symbol, detail=_loggable(detail))

    async def save(self, job_id: uuid.UUID, state: RunState, **values: Any) -> None:
        async with self.runtime.sessionmaker.begin() as session:
            await repo.update_job(
                session,
                job_id,
                checkpoint={s: dict(marks) for s, marks in state.checkpoint.items()},
                chunks_done=state.chunks_done,
                bars_published=state.bars_published,
                ticks_published=state.ticks_published,
                symbols_done=state.symbols_done,
                updated_at=self.clock.now(),
                **values,
            )

    # --- backfill -----------------------------------------------------------------------------

    async def _run_backfill(self, job: CollectionJob, cancel: asyncio.Event) -> None:
        request = BackfillRequest.model_validate(job.params)
        today = self.today()
        chunks = plan(request, today, self.settings.daily_chunk_days)
        state = RunState(
            checkpoint={s: dict(m) for s, m in job.checkpoint.items()},
            chunks_done=job.chunks_done,
            bars_published=job.bars_published,
            ticks_published=job.ticks_published,
            symbols_done=job.symbols_done,
        )
        if "1m" in request.timeframes and request.start < today and not job.checkpoint:
            await self.record(
                job.id,
                "minute_history_unavailable",
                {
                    "from": request.start.isoformat(),
                    "to": min(request.end, today - timedelta(days=1)).isoformat(),
                    "reason": "KIS serves one-minute bars of the current session only",
                },
            )
        client = await self.kis.client()
        last_chunk = _last_chunk_per_symbol(chunks)
        rejected: set[str] = set()
        for chunk in chunks:
            if chunk.symbol in rejected or _done(state.checkpoint, chunk):
                continue
            await self.check_cancel(job.id, cancel)
            try:
                bars = await self._fetch(job.id, client, chunk, today)
            except Rejected as exc:
                # One bad symbol must not sink the others: record it and move on.
                rejected.add(chunk.symbol)
                await self.record(job.id, "symbol_rejected", {"error": exc.code, "message": exc.message}, chunk.symbol)
                continue
            state.bars_published += await self._publish(job.id, chunk, bars)
            state.chunks_done += 1
            state.checkpoint.setdefault(chunk.symbol, {})[chunk.timeframe] = chunk.end.isoformat()
            if last_chunk[chunk.symbol] == chunk:
                state.symbols_done += 1
            await self.save(job.id, state, current_symbol=chunk.symbol, current_day=chunk.end)
            if chunk.timeframe == "1d":
                await self._record_daily_gaps(job.id, chunk, bars, today)

    async def _fetch(self, job_id: uuid.UUID, client: KisClient, chunk: Chunk, today: date) -> list[Bar]:
        for attempt in range(1, CHUNK_ATTEMPTS + 1):
            try:
                if chunk.timeframe == "1d":
                    rows = await client.get_daily_bars(chunk.symbol, chunk.start, chunk.end)
                    return self._valid_bars(job_id, chunk, rows)
                now = self.clock.now()
                minutes = await client.get_minute_bars(chunk.symbol)
                # Only closed minutes: the current one is still moving.
                closed = [row for row in minutes if row.at + timedelta(minutes=1) <= now and row.at.date() == today]
                return self._valid_bars(job_id, chunk, closed)
            except Retryable as exc:
                if attempt == CHUNK_ATTEMPTS:
                    raise
                delay = exc.retry_after if isinstance(exc, RateLimited) else min(MAX_RETRY_DELAY_SECONDS, 2.0**attempt)
                await self.record(
                    job_id,
                    "retry",
                    {"attempt": attempt, "error": exc.code, "message": exc.message, "retry_in": delay,
                     "chunk": [chunk.start.isoformat(), chunk.end.isoformat()], "timeframe": chunk.timeframe},
                    chunk.symbol,
                )  # fmt: skip
                if isinstance(exc, TokenIssueThrottled):
                    # One token a minute is the broker's rule in its own time (a simulator's may run
                    # accelerated): the KIS client computes this wait on the market clock.
                    await self.clock.sleep(delay)
                else:
                    # Per-second call limits and outages are counted in real seconds, whatever
                    # time the market runs in.
                    await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _valid_bars(self, job_id: uuid.UUID, chunk: Chunk, rows: Sequence[DailyBar | MinuteBar]) -> list[Bar]:
        bars: list[Bar] = []
        for row in rows:
            try:
                bars.append(
                    daily_bar(chunk.symbol, row) if isinstance(row, DailyBar) else minute_bar(chunk.symbol, row)
                )
            except (ValidationError, AssertionError) as exc:
                # Never dropped silently: the log has the row's day and why.
                log.warning(
                    "data_collector.invalid_row",
                    job_id=str(job_id),
                    symbol=chunk.symbol,
                    timeframe=chunk.timeframe,
                    day=str(getattr(row, "date", None)),
                    error=type(exc).__name__,
                )
        return bars

    async def _publish(self, job_id: uuid.UUID, chunk: Chunk, bars: list[Bar]) -> int:
        if not bars:
            return 0
        envelope = Envelope(
            message_id=chunk.message_id(job_id),
            occurred_at=self.clock.now(),
            producer=PRODUCER,
            correlation_id=str(job_id),
            payload=MarketBarV1(bars=bars, source="kis"),
        )
        await self.runtime.bus.publish_batch([(f"bar.{chunk.timeframe}.{chunk.symbol}", envelope)])
        BARS_PUBLISHED.labels(chunk.timeframe).inc(len(bars))
        return len(bars)

    async def _record_daily_gaps(self, job_id: uuid.UUID, chunk: Chunk, bars: list[Bar], today: date) -> None:
        """Trading days of the calendar with no bar from the broker become a ``gap`` event."""
        last = min(chunk.end, today - timedelta(days=1))
        if not (self.calendar.covers(chunk.start) and self.calendar.covers(last)) or chunk.start > last:
            return
        received = {bar.ts.astimezone(KST).date() for bar in bars}
        missing = [d for d in self.calendar.trading_days(chunk.start, last) if d not in received]
        if missing:
            await self.record(
                job_id,
                "gap",
                {"timeframe": "1d", "count": len(missing), "days": [d.isoformat() for d in missing[:GAP_DAYS_SHOWN]]},
                chunk.symbol,
            )


def _done(checkpoint: dict[str, dict[str, str]], chunk: Chunk) -> bool:
    mark = checkpoint.get(chunk.symbol, {}).get(chunk.timeframe)
    return mark is not None and date.fromisoformat(mark) >= chunk.end


def _last_chunk_per_symbol(chunks: Sequence[Chunk]) -> dict[str, Chunk]:
    last: dict[str, Chunk] = {}
    for chunk in chunks:
        last[chunk.symbol] = chunk
    return last


def _loggable(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k != "days"}
