"""The data processor's business logic: tick and bar batches in, clean bars and features out.

Every ``process_*`` method runs inside the transaction of the message's inbox claim (see
``consumers``), so its writes — ticks, bars, flags, quarantine, features — happen once per
message however often the bus redelivers it. It returns the features to publish once that
transaction has committed.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial

import numpy as np
import numpy.typing as npt
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.contracts import FeaturesV1, MarketBarV1, MarketQuoteV1
from common.db import write_transaction
from common.db.processing import Fundamentals, ProcessingJob
from common.errors import InvalidInput, NotFound
from data_processor import repository as repo
from data_processor.aggregation import (
    MINUTE,
    BarRow,
    day_is_closed,
    minute_bars_of,
    minute_is_closed,
    minute_of,
)
from data_processor.features import FEATURE_SET, FEATURE_SETS, FeatureSet, Series, moving_average, rsi
from data_processor.settings import DEFAULT_FEATURE_SETS
from data_processor.ticks import MINUTE_US, TickColumns, from_micros, to_micros
from data_processor.validation import (
    FLAG_AMENDED,
    Flag,
    Rejection,
    check_bars,
    check_tick_columns,
    daily_bar_ts,
    gap_flags,
    session_close,
    session_day,
    tick_days,
)

log = structlog.get_logger(__name__)

FEATURES_NAMESPACE = uuid.UUID("5b0f5a8e-8a4e-4c1e-9f77-6a0d3c4f2b10")
MAX_INDICATOR_BARS = 200_000
JOB_CHUNK = 2_000
WATERMARK_LOOKBACK = timedelta(days=7)
_EARLIEST_LOOKBACK_US = to_micros(datetime.min.replace(tzinfo=UTC) + WATERMARK_LOOKBACK)
# ``ta.v1`` rows carry the latest quote's fundamentals known at the bar's close, under these names.
FUNDAMENTAL_FIELDS = ("per", "pbr", "eps", "bps", "market_cap", "foreign_ownership_pct")


@dataclass
class Outcome:
    """What one message did: features to publish after commit, and what was quarantined."""

    features: list[FeaturesV1] = field(default_factory=list)
    quarantined: Counter[tuple[str, str]] = field(default_factory=Counter)
    stored: int = 0

    def reject(self, rejections: Sequence[Rejection]) -> None:
        self.quarantined.update((r.record_kind, r.reason) for r in rejections)


def features_message_id(message: FeaturesV1) -> uuid.UUID:
    """Same features, same id: a republished row is a duplicate the inferencer's inbox skips."""
    digest = hashlib.sha256(json.dumps(message.values, sort_keys=True).encode()).hexdigest()[:16]
    key = f"{message.symbol}|{message.timeframe}|{message.ts.isoformat()}|{message.feature_set}|{digest}"
    return uuid.uuid5(FEATURES_NAMESPACE, key)


def bar_close(timeframe: str, ts: datetime) -> datetime:
    """The instant a bar's data is complete: the session's close for a day, the minute's end (at most 15:30)."""
    close = session_close(session_day(ts))
    return close if timeframe == "1d" else min(ts + MINUTE, close)


def fundamental_values(row: Fundamentals | None) -> dict[str, float | None]:
    """``fund_*`` feature values of a quote's fundamentals (empty when no quote is known)."""
    if row is None:
        return {}
    values: dict[str, float | None] = {}
    for name in FUNDAMENTAL_FIELDS:
        value = getattr(row, name)
        values[f"fund_{name}"] = None if value is None else float(value)
    return values


def _minute_starts(numbers: npt.NDArray[np.int64]) -> set[datetime]:
    """Minute starts of minute numbers (µs since the epoch // one minute)."""
    return {from_micros(n * MINUTE_US) for n in np.unique(numbers).tolist()}


def _lookback(times: npt.NDArray[np.int64]) -> datetime | None:
    """Where a batch's watermark lookup starts: the previous tick is usually seconds before the
    batch, and a week back covers nights and holidays (None at the very start of the calendar)."""
    earliest = int(times.min())
    return from_micros(earliest) - WATERMARK_LOOKBACK if earliest >= _EARLIEST_LOOKBACK_US else None


def _always(_: datetime) -> bool:
    return True


def _minute_closed(watermark: datetime, ts: datetime) -> bool:
    return minute_is_closed(ts, watermark)


def _day_closed(watermark: datetime, ts: datetime) -> bool:
    return day_is_closed(ts, watermark)


class Processor:
    """Validation, storage, aggregation and feature updates for incoming market data."""

    def __init__(self, clock: Clock, feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS) -> None:
        unknown = sorted(set(feature_sets) - set(FEATURE_SETS))
        if unknown or not feature_sets:
            raise ValueError(f"unknown or no feature sets {unknown}; known: {sorted(FEATURE_SETS)}")
        self._clock = clock
        self.feature_sets: tuple[FeatureSet, ...] = tuple(FEATURE_SETS[name] for name in dict.fromkeys(feature_sets))
        # Bars a refresh must look back and forward: the longest window of any configured set.
        self.window = max(f.lookback for f in self.feature_sets)
        # Previous closes are history: once found they do not change (a correction would be a new bar).
        self._base_prices: dict[tuple[str, date], int] = {}

    # -- ticks --------------------------------------------------------------------------------

    async def process_ticks(self, session: AsyncSession, columns: TickColumns, message_id: uuid.UUID) -> Outcome:
        """Validate, store and aggregate one message's ticks (``TickColumns``: see ``ticks``)."""
        outcome = Outcome()
        await repo.lock_symbols(session, columns.symbols)
        bases = await self._base_prices_for(session, tick_days(columns))
        accepted, rejected = check_tick_columns(columns, lambda symbol, day: bases.get((symbol, day)))
        await repo.quarantine(session, message_id, rejected, self._clock.now())
        outcome.reject(rejected)
        # Exact copies within the batch are one tick; ordered by (symbol, ts, seq) from here on.
        unique = columns.distinct_identities(np.flatnonzero(accepted))
        if len(unique) == 0:
            return outcome

        codes = columns.symbol[unique]
        present = sorted(set(codes.tolist()))
        times = columns.ts[unique]
        before = await repo.latest_tick_ts(session, [columns.symbols[c] for c in present], _lookback(times))
        # The lookups above plan better with their values; the statements below, once (see there).
        await repo.use_generic_plans(session)
        # Ticks newer than everything stored for their symbol cannot conflict (writers of a symbol
        # hold its lock): they are appended with a plain COPY; otherwise insert-or-ignore.
        watermarks = np.full(len(columns.symbols), np.iinfo(np.int64).min, dtype=np.int64)
        for code in present:
            previous = before.get(columns.symbols[code])
            if previous is not None:
                watermarks[code] = to_micros(previous)
        all_new = bool((times > watermarks[codes]).all())
        outcome.stored = await repo.insert_ticks(session, columns, unique, all_new=all_new)

        numbers = times // MINUTE_US
        minutes: dict[str, set[datetime]] = {}
        latest: dict[str, datetime] = {}
        # Minutes after the previous watermark minute hold no stored ticks yet: their bars come
        # straight from this batch (the common, in-order case). Earlier minutes — late ticks, or
        # the minute the last batch ended in — are recomputed from everything stored.
        boundaries = np.where(watermarks == np.iinfo(np.int64).min, watermarks, watermarks // MINUTE_US)
        stored_minutes: dict[str, set[datetime]] = {}
        for code in present:
            symbol = columns.symbols[code]
            mine = codes == code
            minutes[symbol] = _minute_starts(numbers[mine])
            latest[symbol] = from_micros(int(times[mine].max()))
            earlier = _minute_starts(numbers[mine & (numbers <= boundaries[code])])
            if earlier:
                stored_minutes[symbol] = earlier
        fresh = unique[numbers > boundaries[codes]]
        days = {s: {daily_bar_ts(session_day(m)) for m in ms} for s, ms in minutes.items()}
        await repo.upsert_bars(session, minute_bars_of(columns, fresh))
        await repo.rebuild_minute_bars(session, stored_minutes)
        await repo.rebuild_daily_bars(session, days)

        amended: list[Flag] = []
        for symbol, ms in minutes.items():
            previous = before.get(symbol)
            if previous is None:
                continue
            amended.extend(Flag(symbol, "1m", m, FLAG_AMENDED) for m in ms if minute_is_closed(m, previous))
            amended.extend(Flag(symbol, "1d", d, FLAG_AMENDED) for d in days[symbol] if day_is_closed(d, previous))
        await repo.write_flags(session, amended)

        for symbol in sorted(minutes):
            previous = before.get(symbol)
            watermark = max(latest[symbol], previous) if previous else latest[symbol]
            start_minute = min(minutes[symbol])
            start_day = min(days[symbol])
            if previous is not None:
                start_minute = min(start_minute, minute_of(previous))
                start_day = min(start_day, daily_bar_ts(session_day(previous)))
            outcome.features += await self.refresh_features(
                session, symbol, "1m", start_minute, closed=partial(_minute_closed, watermark)
            )
            outcome.features += await self.refresh_features(
                session, symbol, "1d", start_day, closed=partial(_day_closed, watermark)
            )
        return outcome

    async def _base_prices_for(self, session: AsyncSession, keys: set[tuple[str, date]]) -> dict[tuple[str, date], int]:
        found: dict[tuple[str, date], int] = {}
        for symbol, day in keys:
            cached = self._base_prices.get((symbol, day))
            if cached is None:
                cached = await repo.previous_close(session, symbol, "1d", daily_bar_ts(day))
                if cached is None:
                    continue
                self._base_prices[(symbol, day)] = cached
            found[(symbol, day)] = cached
        return found

    # -- bars ---------------------------------------------------------------------------------

    async def process_bars(self, session: AsyncSession, batch: MarketBarV1, message_id: uuid.UUID) -> Outcome:
        outcome = Outcome()
        bars = batch.bars
        await repo.lock_symbols(session, {b.symbol for b in bars})
        first: dict[tuple[str, str], datetime] = {}
        for bar in bars:
            key = (bar.symbol, bar.timeframe)
            first[key] = min(first.get(key, bar.ts), bar.ts)
        previous: dict[tuple[str, str], tuple[datetime, int, int]] = {}
        for (symbol, timeframe), ts in first.items():
            prior = await repo.previous_bar(session, symbol, timeframe, ts)
            if prior is not None:
                previous[(symbol, timeframe)] = prior
        checked = check_bars(bars, previous)
        await repo.quarantine(session, message_id, checked.rejected, self._clock.now())
        outcome.reject(checked.rejected)
        if not checked.accepted:
            return outcome
        rows = [
            (b.symbol, b.timeframe, b.ts, b.open, b.high, b.low, b.close, b.volume, b.value) for b in checked.accepted
        ]
        outcome.stored = await repo.copy_insert_ignoring(session, "bars", repo.BAR_COLUMNS, rows)
        await repo.write_flags(session, checked.flags)
        if outcome.stored == 0:
            return outcome  # every bar was already stored, with its features

        spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for bar in checked.accepted:
            key = (bar.symbol, bar.timeframe)
            low, high = spans.get(key, (bar.ts, bar.ts))
            spans[key] = (min(low, bar.ts), max(high, bar.ts))
        for (symbol, timeframe), (low, high) in sorted(spans.items()):
            # A bar changes the features of itself and of the WINDOW-1 bars after it, no more.
            outcome.features += await self.refresh_features(
                session, symbol, timeframe, low, closed=_always, last_changed=high
            )
        return outcome

    # -- features -----------------------------------------------------------------------------

    async def refresh_features(
        self,
        session: AsyncSession,
        symbol: str,
        timeframe: str,
        start: datetime | None,
        *,
        closed: Callable[[datetime], bool],
        last_changed: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> list[FeaturesV1]:
        """Recompute and store every configured feature set of closed bars from ``start`` on; returns them.

        Stops at the first bar not yet closed, at ``end`` (inclusive), after ``limit`` bars, or
        ``window-1`` bars after ``last_changed`` (later rows cannot see the change). Gap flags
        of the same bars are recomputed alongside. Messages come bar by bar, in the order of
        the configured sets.
        """
        current = await repo.load_bars(session, symbol, timeframe, start, None, limit=limit)
        cut = len(current)
        for index, bar in enumerate(current):
            if not closed(bar.ts) or (end is not None and bar.ts > end):
                cut = index
                break
        current = current[:cut]
        if last_changed is not None:
            changed = sum(1 for b in current if b.ts <= last_changed)
            current = current[: changed + self.window - 1]
        if not current:
            return []
        history = await repo.load_history(session, symbol, timeframe, current[0].ts, self.window - 1)
        rows = history + current
        series = Series.of([(b.open, b.high, b.low, b.close, b.volume, b.value) for b in rows])
        computed = await asyncio.to_thread(_compute_sets, self.feature_sets, series, len(history))

        neighbours = history[-1:] + current
        gaps = gap_flags(timeframe, [(b.symbol, b.ts) for b in neighbours])
        await repo.replace_gap_flags(session, symbol, timeframe, current[0].ts, current[-1].ts, gaps)
        if FEATURE_SET in computed:
            gapped = {f.ts for f in gaps}
            closes = [bar_close(timeframe, b.ts) for b in current]
            known = await repo.fundamentals_between(session, symbol, closes[0], closes[-1])
            stamps = [f.ts for f in known]
            for bar, bar_end, row in zip(current, closes, computed[FEATURE_SET], strict=True):
                row["halted"] = 1.0 if bar.volume == 0 else 0.0
                row["after_gap"] = 1.0 if bar.ts in gapped else 0.0
                # The latest quote fetched at or before the bar's close: never one from its future.
                position = bisect.bisect_right(stamps, bar_end)
                row.update(fundamental_values(known[position - 1] if position else None))
        stored = [
            (bar.ts, feature_set.name, computed[feature_set.name][index])
            for feature_set in self.feature_sets
            for index, bar in enumerate(current)
        ]
        await repo.write_features(session, symbol, timeframe, stored)
        messages: list[FeaturesV1] = []
        for index, bar in enumerate(current):
            messages.extend(
                FeaturesV1(
                    symbol=symbol,
                    timeframe=timeframe,
                    ts=bar.ts,
                    close=bar.close,
                    values=computed[feature_set.name][index],
                    feature_set=feature_set.name,
                )
                for feature_set in self.feature_sets
            )
        return messages

    # -- quotes -------------------------------------------------------------------------------

    async def process_quote(self, session: AsyncSession, quote: MarketQuoteV1, message_id: uuid.UUID) -> Outcome:
        """Keep a quote's fundamentals; ``ta.v1`` rows of bars closing from ``quote.ts`` on will carry them."""
        stored = await repo.store_fundamentals(session, quote, self._clock.now())
        return Outcome(stored=stored)

    # -- queries ------------------------------------------------------------------------------

    async def closes(
        self, session: AsyncSession, symbol: str, timeframe: str, start: datetime | None, end: datetime | None
    ) -> list[BarRow]:
        if start is not None and end is not None and start > end:
            raise InvalidInput(
                "start must not be after end", detail={"start": start.isoformat(), "end": end.isoformat()}
            )
        bars = await repo.load_bars(session, symbol, timeframe, start, None, limit=MAX_INDICATOR_BARS + 1)
        if end is not None:
            bars = [b for b in bars if b.ts <= end]
        if len(bars) > MAX_INDICATOR_BARS:
            raise InvalidInput(f"range too long: at most {MAX_INDICATOR_BARS} bars per request")
        if not bars:
            raise NotFound(f"no {timeframe} bars for {symbol} in the requested range")
        return bars

    async def indicator(
        self,
        session: AsyncSession,
        symbol: str,
        timeframe: str,
        start: datetime | None,
        end: datetime | None,
        *,
        kind: str,
        window: int,
    ) -> list[tuple[BarRow, float | None]]:
        """``kind`` (rsi, sma, ema) over exactly the closes of the bars in ``[start, end]``."""
        bars = await self.closes(session, symbol, timeframe, start, end)
        closes = [b.close for b in bars]
        if kind == "rsi":
            values = await asyncio.to_thread(rsi, closes, window)
        else:
            values = await asyncio.to_thread(moving_average, closes, window, kind)
        return list(zip(bars, values, strict=True))


class JobRunner:
    """Runs ``POST /data/process`` jobs in the background, persisting their progress.

    Each chunk of bars is its own transaction, so progress is visible while the job runs and a
    failure keeps what was done. Jobs are tracked and cancelled when the service stops.
    """

    def __init__(self, processor: Processor, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._processor = processor
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    async def recover(self) -> None:
        async with self._sessionmaker.begin() as session:
            failed = await repo.fail_interrupted_jobs(session, self._clock.now())
        if failed:
            log.warning("data_processor.jobs_interrupted", count=failed)

    async def submit(
        self, symbols: Sequence[str], timeframe: str, start: datetime | None, end: datetime | None
    ) -> ProcessingJob:
        now = self._clock.now()
        job = ProcessingJob(
            id=uuid.uuid4(),
            status="queued",
            symbols=list(symbols),
            timeframe=timeframe,
            start=start,
            end=end,
            total=0,
            done=0,
            features_written=0,
            error=None,
            created_at=now,
            updated_at=now,
        )
        async with self._sessionmaker.begin() as session:
            await repo.add_job(session, job)
        task = asyncio.create_task(self._run(job.id, list(symbols), timeframe, start, end), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("data_processor.job_submitted", job_id=str(job.id), symbols=len(symbols), timeframe=timeframe)
        return job

    async def get(self, session: AsyncSession, job_id: uuid.UUID) -> ProcessingJob:
        job = await repo.get_job(session, job_id)
        if job is None:
            raise NotFound(f"no processing job {job_id}")
        return job

    async def wait(self) -> None:
        """Wait for every running job (tests, benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout: float = 5.0) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
            if pending:
                log.warning("data_processor.jobs_not_stopped", count=len(pending))

    async def _run(
        self, job_id: uuid.UUID, symbols: list[str], timeframe: str, start: datetime | None, end: datetime | None
    ) -> None:
        try:
            # Read-then-write transactions take SQLite's write lock first (all-in-one shares the file).
            async with write_transaction(self._sessionmaker) as session:
                total = await repo.count_bars(session, symbols, timeframe, start, end)
                await repo.update_job(session, job_id, status="running", total=total, updated_at=self._clock.now())
            done = written = 0
            for symbol in symbols:
                cursor = start
                while True:
                    async with write_transaction(self._sessionmaker) as session:
                        rows = await self._processor.refresh_features(
                            session, symbol, timeframe, cursor, closed=_always, end=end, limit=JOB_CHUNK
                        )
                        bars = sorted({row.ts for row in rows})
                        done += len(bars)
                        written += len(rows)
                        await repo.update_job(
                            session, job_id, done=done, features_written=written, updated_at=self._clock.now()
                        )
                    if len(bars) < JOB_CHUNK:
                        break
                    cursor = bars[-1] + timedelta(microseconds=1)
            async with self._sessionmaker.begin() as session:
                await repo.update_job(session, job_id, status="succeeded", updated_at=self._clock.now())
            log.info("data_processor.job_succeeded", job_id=str(job_id), bars=done)
        except asyncio.CancelledError:
            await self._fail(job_id, "cancelled: the service stopped")
            raise
        except Exception as exc:
            log.exception("data_processor.job_failed", job_id=str(job_id))
            await self._fail(job_id, f"{type(exc).__name__}: {exc}"[:1000])

    async def _fail(self, job_id: uuid.UUID, error: str) -> None:
        async with self._sessionmaker.begin() as session:
            await repo.update_job(session, job_id, status="failed", error=error, updated_at=self._clock.now())


def _compute_sets(
    feature_sets: Sequence[FeatureSet], series: Series, first: int
) -> dict[str, list[dict[str, float | None]]]:
    """Every set's rows of bars ``first…`` (one worker-thread hop for all of them)."""
    return {f.name: f.compute_range(series, first) for f in feature_sets}


async def quarantine_source_rows(
    session: AsyncSession, source: uuid.UUID, rejections: Sequence[Rejection], now: datetime
) -> None:
    """Quarantine rows a reader could not turn into records (keyed by the source, so once)."""
    await repo.quarantine(session, source, rejections, now)
