"""All SQL of the data processor, on PostgreSQL and SQLite.

Bulk writes on PostgreSQL go through COPY (asyncpg ``copy_records_to_table``; for ticks a
binary COPY payload built from their columns, ``pgcopy``) into a per-connection temporary
staging table, then one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` — or, for ticks known to be
new, straight into ``ticks``; on SQLite they are executemany insert-or-ignore. Every function
runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from common.contracts import MarketQuoteV1
from common.db import BarRecord, FeatureRecord, TickRecord, insert_ignoring_duplicates
from common.db.processing import BarFlag, Fundamentals, ProcessingJob, QuarantinedRecord
from data_processor import pgcopy
from data_processor.aggregation import MINUTE, BarRow, TickRow, daily_bars, minute_bars
from data_processor.ticks import SIDES, Positions, TickColumns
from data_processor.validation import FLAG_GAP, Flag, Rejection

TICK_COLUMNS = ("symbol", "ts", "seq", "price", "volume", "cum_volume", "side")
BAR_COLUMNS = ("symbol", "timeframe", "ts", "open", "high", "low", "close", "volume", "value")
FEATURE_COLUMNS = ("symbol", "timeframe", "ts", "feature_set", "values")
SQLITE_CHUNK = 500
# Minute bars of one session day lie within this span from the day's 09:00 KST.
SESSION_SPAN = timedelta(hours=12)


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _upsert(dialect: str, model: Any, keys: Sequence[str], columns: Sequence[str]) -> Insert:
    statement = postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)
    return statement.on_conflict_do_update(index_elements=list(keys), set_={c: statement.excluded[c] for c in columns})


async def _asyncpg(session: AsyncSession) -> Any:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def _stage(conn: Any, table: str) -> str:
    """``_stage_<table>``: a temp table like ``table``, emptied at commit, created once per connection."""
    stage = f"_stage_{table}"
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    return stage


async def _insert_from_stage(conn: Any, table: str, stage: str, columns: Sequence[str], conflict: str) -> int:
    names = ", ".join(f'"{c}"' for c in columns)
    # Table and column names come from this module's constants, never from input.
    status: str = await conn.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} {conflict}"  # noqa: S608
    )
    await conn.execute(f"TRUNCATE {stage}")
    return int(status.rsplit(" ", 1)[-1])


async def _copy_via_stage(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]], conflict: str
) -> int:
    """PostgreSQL: COPY into ``_stage_<table>`` (a temp table emptied at commit), then one
    ``INSERT … SELECT … <conflict>`` from it; returns how many rows it inserted or updated."""
    conn = await _asyncpg(session)
    stage = await _stage(conn, table)
    await conn.copy_records_to_table(stage, records=rows, columns=list(columns))
    return await _insert_from_stage(conn, table, stage, columns, conflict)


async def copy_insert_ignoring(
    session: AsyncSession, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> int:
    """Insert rows, skipping those whose key exists; returns how many were new.

    PostgreSQL: COPY through a staging table, then one insert-or-ignore. SQLite: chunked
    executemany insert-or-ignore.
    """
    if not rows:
        return 0
    dialect = dialect_of(session)
    if dialect == "postgresql":
        return await _copy_via_stage(session, table, columns, rows, "ON CONFLICT DO NOTHING")
    model = {"ticks": TickRecord, "bars": BarRecord}[table]
    inserted = 0
    # Core execution: the ORM's bulk path does not report how many rows were really inserted.
    connection = await session.connection()
    for start in range(0, len(rows), SQLITE_CHUNK):
        chunk = [dict(zip(columns, row, strict=True)) for row in rows[start : start + SQLITE_CHUNK]]
        result = await connection.execute(insert_ignoring_duplicates(model, dialect), chunk)
        inserted += int(getattr(result, "rowcount", 0) or 0)
    return inserted


def tick_copy_payload(columns: TickColumns, positions: Positions) -> bytes:
    """The ticks at ``positions`` as a binary COPY payload in ``TICK_COLUMNS`` order."""
    return pgcopy.binary_copy(
        [
            pgcopy.Text(columns.symbol[positions], columns.symbols),
            pgcopy.Timestamp(columns.ts[positions]),
            pgcopy.Bigint(columns.seq[positions]),
            pgcopy.Bigint(columns.price[positions]),
            pgcopy.Bigint(columns.volume[positions]),
            pgcopy.Bigint(columns.cum_volume[positions], columns.has_cum_volume[positions]),
            pgcopy.Text(columns.side[positions], SIDES),
        ],
        len(positions),
    )


async def insert_ticks(session: AsyncSession, columns: TickColumns, positions: Positions, *, all_new: bool) -> int:
    """Insert the ticks at ``positions`` (distinct identities), skipping any already stored;
    returns how many were new.

    PostgreSQL: one binary COPY built from the columns. ``all_new`` (every tick later than
    everything stored for its symbol, under the symbol's lock) lets it go straight into
    ``ticks`` — should a row exist after all, the key violation fails the transaction and the
    message is retried, never half-applied; otherwise it goes through the stage and one
    insert-or-ignore. SQLite: the insert-or-ignore path.
    """
    if len(positions) == 0:
        return 0
    if dialect_of(session) != "postgresql":
        return await copy_insert_ignoring(session, "ticks", TICK_COLUMNS, columns.rows(positions))
    conn = await _asyncpg(session)
    # A memoryview, not bytes: asyncpg would take bytes for a file name to open.
    payload = memoryview(tick_copy_payload(columns, positions))
    if all_new:
        await conn.copy_to_table("ticks", source=payload, columns=list(TICK_COLUMNS), format="binary")
        return len(positions)
    stage = await _stage(conn, "ticks")
    await conn.copy_to_table(stage, source=payload, columns=list(TICK_COLUMNS), format="binary")
    return await _insert_from_stage(conn, "ticks", stage, TICK_COLUMNS, "ON CONFLICT DO NOTHING")


_GENERIC_PLANS = text("SET LOCAL plan_cache_mode = force_generic_plan")


async def use_generic_plans(session: AsyncSession) -> None:
    """Plan this transaction's statements once per connection, not once per execution (PostgreSQL).

    ``ticks``, ``bars`` and ``features`` have a partition per year: a custom plan considers
    every partition on each execution (1–4 ms of planning for a one-row lookup). A cached
    generic plan leaves out the partitions its parameters exclude when it starts executing.
    """
    if dialect_of(session) == "postgresql":
        await session.execute(_GENERIC_PLANS)


async def lock_symbols(session: AsyncSession, symbols: Iterable[str]) -> None:
    """Serialise writers of the same symbols until commit (PostgreSQL advisory locks, sorted: no deadlock).

    Bars are recomputed from what is stored, so two transactions recomputing the same minute
    must not run side by side; SQLite has one writer at a time anyway.
    """
    if dialect_of(session) != "postgresql":
        return
    keys = sorted({f"data-processor:{s}" for s in symbols})
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"),
        {"keys": keys},
    )


async def latest_tick_ts(
    session: AsyncSession, symbols: Iterable[str], since: datetime | None = None
) -> dict[str, datetime]:
    """The latest stored tick of each symbol (a symbol with none is left out).

    With ``since``, ticks from ``since`` on are looked at first, and earlier ones only for a
    symbol that has none since: the same answer, but PostgreSQL then plans the partitions from
    ``since``'s year on instead of every year (the planning is most of such a lookup's cost).
    """
    result: dict[str, datetime] = {}
    for symbol in sorted(set(symbols)):
        latest = select(func.max(TickRecord.ts)).where(TickRecord.symbol == symbol)
        ts = None
        if since is not None:
            ts = (await session.execute(latest.where(TickRecord.ts >= since))).scalar_one_or_none()
            latest = latest.where(TickRecord.ts < since)
        if ts is None:
            ts = (await session.execute(latest)).scalar_one_or_none()
        if ts is not None:
            result[symbol] = ts
    return result


async def previous_close(session: AsyncSession, symbol: str, timeframe: str, before: datetime) -> int | None:
    statement = (
        select(BarRecord.close)
        .where(BarRecord.symbol == symbol, BarRecord.timeframe == timeframe, BarRecord.ts < before)
        .order_by(BarRecord.ts.desc())
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def previous_bar(
    session: AsyncSession, symbol: str, timeframe: str, before: datetime
) -> tuple[datetime, int, int] | None:
    statement = (
        select(BarRecord.ts, BarRecord.close, BarRecord.volume)
        .where(BarRecord.symbol == symbol, BarRecord.timeframe == timeframe, BarRecord.ts < before)
        .order_by(BarRecord.ts.desc())
        .limit(1)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else (row[0], row[1], row[2])


async def upsert_bars(session: AsyncSession, bars: Sequence[BarRow]) -> None:
    if not bars:
        return
    statement = _upsert(dialect_of(session), BarRecord, ("symbol", "timeframe", "ts"), BAR_COLUMNS[3:])
    # Core executemany on the session's connection: the ORM's bulk-insert bookkeeping buys nothing here.
    connection = await session.connection()
    await connection.execute(statement, [{c: getattr(b, c) for c in BAR_COLUMNS} for b in bars])


_REBUILD_MINUTES_PG = text(
    """
    WITH affected AS (
        SELECT DISTINCT a.symbol, a.m
        FROM unnest(CAST(:symbols AS text[]), CAST(:minutes AS timestamptz[])) AS a(symbol, m)
    )
    INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume, value)
    SELECT a.symbol, '1m', a.m,
           (array_agg(t.price ORDER BY t.ts, t.seq))[1], max(t.price), min(t.price),
           (array_agg(t.price ORDER BY t.ts DESC, t.seq DESC))[1],
           sum(t.volume)::bigint, sum(t.price * t.volume)::bigint
    FROM affected a JOIN ticks t ON t.symbol = a.symbol AND t.ts >= a.m AND t.ts < a.m + interval '1 minute'
    -- Constant bounds let the planner prune partitions at plan time instead of probing every year.
    WHERE t.ts >= :low AND t.ts < :high
    GROUP BY a.symbol, a.m
    ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET
        open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, value = excluded.value
    """
)

_REBUILD_DAYS_PG = text(
    """
    WITH affected AS (
        SELECT DISTINCT a.symbol, a.d
        FROM unnest(CAST(:symbols AS text[]), CAST(:days AS timestamptz[])) AS a(symbol, d)
    )
    INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume, value)
    SELECT a.symbol, '1d', a.d,
           (array_agg(b.open ORDER BY b.ts))[1], max(b.high), min(b.low),
           (array_agg(b.close ORDER BY b.ts DESC))[1], sum(b.volume)::bigint,
           CASE WHEN count(b.value) = count(*) THEN sum(b.value)::bigint END
    FROM affected a JOIN bars b
      ON b.symbol = a.symbol AND b.timeframe = '1m' AND b.ts >= a.d AND b.ts < a.d + interval '12 hours'
    WHERE b.ts >= :low AND b.ts < :high
    GROUP BY a.symbol, a.d
    ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET
        open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, value = excluded.value
    """
)


async def rebuild_minute_bars(session: AsyncSession, minutes: Mapping[str, set[datetime]]) -> None:
    """Recompute the 1-minute bars of these (symbol → minute starts) from every stored tick."""
    if not minutes:
        return
    if dialect_of(session) == "postgresql":
        pairs = [(s, m) for s, ms in minutes.items() for m in ms]
        starts = [p[1] for p in pairs]
        bounds = {"low": min(starts), "high": max(starts) + MINUTE}
        await session.execute(_REBUILD_MINUTES_PG, {"symbols": [p[0] for p in pairs], "minutes": starts, **bounds})
        return
    for symbol, wanted in minutes.items():
        statement = select(TickRecord.symbol, TickRecord.ts, TickRecord.seq, TickRecord.price, TickRecord.volume).where(
            TickRecord.symbol == symbol, TickRecord.ts >= min(wanted), TickRecord.ts < max(wanted) + MINUTE
        )
        ticks: list[TickRow] = [(r[0], r[1], r[2], r[3], r[4]) for r in await session.execute(statement)]
        await upsert_bars(session, [b for b in minute_bars(ticks) if b.ts in wanted])


async def rebuild_daily_bars(session: AsyncSession, days: Mapping[str, set[datetime]]) -> None:
    """Recompute the daily bars of these (symbol → day at 09:00 KST) from their minute bars."""
    if not days:
        return
    if dialect_of(session) == "postgresql":
        pairs = [(s, d) for s, ds in days.items() for d in ds]
        starts = [p[1] for p in pairs]
        bounds = {"low": min(starts), "high": max(starts) + SESSION_SPAN}
        await session.execute(_REBUILD_DAYS_PG, {"symbols": [p[0] for p in pairs], "days": starts, **bounds})
        return
    for symbol, wanted in days.items():
        minutes = await load_bars(session, symbol, "1m", min(wanted), max(wanted) + SESSION_SPAN)
        await upsert_bars(session, [b for b in daily_bars(minutes) if b.ts in wanted])


def _bar_row(row: Sequence[Any]) -> BarRow:
    return BarRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


_BAR_SELECT = select(*(getattr(BarRecord, c) for c in BAR_COLUMNS))


async def load_bars(
    session: AsyncSession,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    *,
    limit: int | None = None,
) -> list[BarRow]:
    """Bars with ``start ≤ ts < end`` in time order (either bound may be open)."""
    statement = _BAR_SELECT.where(BarRecord.symbol == symbol, BarRecord.timeframe == timeframe)
    if start is not None:
        statement = statement.where(BarRecord.ts >= start)
    if end is not None:
        statement = statement.where(BarRecord.ts < end)
    statement = statement.order_by(BarRecord.ts)
    if limit is not None:
        statement = statement.limit(limit)
    return [_bar_row(r) for r in await session.execute(statement)]


async def load_history(
    session: AsyncSession, symbol: str, timeframe: str, before: datetime, count: int
) -> list[BarRow]:
    """The ``count`` bars just before ``before``, in time order."""
    if count <= 0:
        return []
    statement = (
        _BAR_SELECT.where(BarRecord.symbol == symbol, BarRecord.timeframe == timeframe, BarRecord.ts < before)
        .order_by(BarRecord.ts.desc())
        .limit(count)
    )
    rows = [_bar_row(r) for r in await session.execute(statement)]
    rows.reverse()
    return rows


# Below this many rows one multi-row upsert is a single round trip; COPY through the stage costs four.
COPY_MIN_ROWS = 500


async def write_features(
    session: AsyncSession, symbol: str, timeframe: str, rows: Sequence[tuple[datetime, str, dict[str, Any]]]
) -> None:
    """Store ``(ts, feature_set, values)`` rows, replacing the values of rows already stored (a recomputation)."""
    if not rows:
        return
    dialect = dialect_of(session)
    if dialect == "postgresql" and len(rows) >= COPY_MIN_ROWS:
        records = [(symbol, timeframe, ts, name, json.dumps(values)) for ts, name, values in rows]
        conflict = 'ON CONFLICT (symbol, timeframe, ts, feature_set) DO UPDATE SET "values" = excluded."values"'
        await _copy_via_stage(session, "features", FEATURE_COLUMNS, records, conflict)
        return
    statement = _upsert(dialect, FeatureRecord, FEATURE_COLUMNS[:4], ("values",))
    payload = [
        {"symbol": symbol, "timeframe": timeframe, "ts": ts, "feature_set": name, "values": values}
        for ts, name, values in rows
    ]
    connection = await session.connection()
    for start in range(0, len(payload), 2_000):
        await connection.execute(statement, payload[start : start + 2_000])


async def store_fundamentals(session: AsyncSession, quote: MarketQuoteV1, now: datetime) -> int:
    """Keep a quote's fundamentals (once per symbol and fetch time); returns 1 when new."""
    row = quote.model_dump(exclude={"kind"}) | {"received_at": now}
    result = await session.execute(insert_ignoring_duplicates(Fundamentals, dialect_of(session)).values(row))
    return int(getattr(result, "rowcount", 0) or 0)


async def fundamentals_between(
    session: AsyncSession, symbol: str, first: datetime, last: datetime
) -> list[Fundamentals]:
    """The fundamentals a bar closing anywhere in ``[first, last]`` may use, oldest first: the latest
    row at or before ``first`` and every row after it up to ``last``."""
    latest_before = (
        select(func.max(Fundamentals.ts)).where(Fundamentals.symbol == symbol, Fundamentals.ts <= first)
    ).scalar_subquery()
    statement = (
        select(Fundamentals)
        .where(
            Fundamentals.symbol == symbol,
            Fundamentals.ts <= last,
            or_(latest_before.is_(None), Fundamentals.ts >= latest_before),
        )
        .order_by(Fundamentals.ts)
    )
    return list((await session.execute(statement)).scalars())


async def write_flags(session: AsyncSession, flags: Sequence[Flag]) -> None:
    if not flags:
        return
    statement = _upsert(dialect_of(session), BarFlag, ("symbol", "timeframe", "ts", "flag"), ("detail",))
    unique = {(f.symbol, f.timeframe, f.ts, f.flag): f for f in flags}
    await session.execute(
        statement,
        [
            {"symbol": f.symbol, "timeframe": f.timeframe, "ts": f.ts, "flag": f.flag, "detail": f.detail}
            for f in unique.values()
        ],
    )


async def replace_gap_flags(
    session: AsyncSession, symbol: str, timeframe: str, start: datetime, end: datetime, flags: Sequence[Flag]
) -> None:
    """Gap flags of bars in ``[start, end]`` become ``flags`` (a bar that filled a hole clears its flag)."""
    await session.execute(
        delete(BarFlag).where(
            BarFlag.symbol == symbol,
            BarFlag.timeframe == timeframe,
            BarFlag.flag == FLAG_GAP,
            BarFlag.ts >= start,
            BarFlag.ts <= end,
        )
    )
    await write_flags(session, flags)


async def flags_between(
    session: AsyncSession, symbol: str, timeframe: str, start: datetime | None, end: datetime | None
) -> list[Flag]:
    statement = select(BarFlag).where(BarFlag.symbol == symbol, BarFlag.timeframe == timeframe)
    if start is not None:
        statement = statement.where(BarFlag.ts >= start)
    if end is not None:
        statement = statement.where(BarFlag.ts < end)
    rows = (await session.execute(statement.order_by(BarFlag.ts, BarFlag.flag))).scalars()
    return [Flag(r.symbol, r.timeframe, r.ts, r.flag, dict(r.detail)) for r in rows]


async def quarantine(
    session: AsyncSession, message_id: uuid.UUID, rejections: Sequence[Rejection], now: datetime
) -> None:
    """Keep rejected records with their reasons; keyed by (message, position), so never twice."""
    if not rejections:
        return
    statement = insert_ignoring_duplicates(QuarantinedRecord, dialect_of(session))
    rows = [
        {
            "message_id": message_id,
            "position": r.position,
            "record_kind": r.record_kind,
            "symbol": r.symbol,
            "timeframe": r.timeframe,
            "ts": r.ts,
            "reason": r.reason,
            "detail": r.detail,
            "record": r.record,
            "quarantined_at": now,
        }
        for r in rejections
    ]
    for start in range(0, len(rows), SQLITE_CHUNK):
        await session.execute(statement, rows[start : start + SQLITE_CHUNK])


async def quarantine_counts(session: AsyncSession) -> dict[str, int]:
    statement = select(QuarantinedRecord.reason, func.count()).group_by(QuarantinedRecord.reason)
    return {reason: count for reason, count in (await session.execute(statement)).all()}


async def read_features(
    session: AsyncSession,
    symbol: str,
    timeframe: str,
    feature_set: str,
    start: datetime | None,
    end: datetime | None,
    after: datetime | None,
    limit: int,
) -> list[tuple[datetime, dict[str, Any]]]:
    """A page of feature rows in time order; ``after`` is the keyset cursor (last ts of the previous page)."""
    statement = select(FeatureRecord.ts, FeatureRecord.values).where(
        FeatureRecord.symbol == symbol, FeatureRecord.timeframe == timeframe, FeatureRecord.feature_set == feature_set
    )
    if start is not None:
        statement = statement.where(FeatureRecord.ts >= start)
    if end is not None:
        statement = statement.where(FeatureRecord.ts <= end)
    if after is not None:
        statement = statement.where(FeatureRecord.ts > after)
    rows = await session.execute(statement.order_by(FeatureRecord.ts).limit(limit))
    return [(ts, dict(values)) for ts, values in rows.all()]


async def count_bars(
    session: AsyncSession, symbols: Sequence[str], timeframe: str, start: datetime | None, end: datetime | None
) -> int:
    statement = (
        select(func.count())
        .select_from(BarRecord)
        .where(BarRecord.symbol.in_(symbols), BarRecord.timeframe == timeframe)
    )
    if start is not None:
        statement = statement.where(BarRecord.ts >= start)
    if end is not None:
        statement = statement.where(BarRecord.ts <= end)
    return int((await session.execute(statement)).scalar_one())


async def existing_bar_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str, datetime]]
) -> set[tuple[str, str, datetime]]:
    if not keys:
        return set()
    found: set[tuple[str, str, datetime]] = set()
    for start in range(0, len(keys), SQLITE_CHUNK):
        chunk = keys[start : start + SQLITE_CHUNK]
        statement = select(BarRecord.symbol, BarRecord.timeframe, BarRecord.ts).where(
            tuple_(BarRecord.symbol, BarRecord.timeframe, BarRecord.ts).in_(chunk)
        )
        found.update((s, tf, ts) for s, tf, ts in (await session.execute(statement)).all())
    return found


# -- processing jobs -------------------------------------------------------------------------------


async def add_job(session: AsyncSession, job: ProcessingJob) -> None:
    session.add(job)
    await session.flush()


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> ProcessingJob | None:
    return await session.get(ProcessingJob, job_id)


async def update_job(session: AsyncSession, job_id: uuid.UUID, **values: Any) -> None:
    await session.execute(update(ProcessingJob).where(ProcessingJob.id == job_id).values(**values))


async def fail_interrupted_jobs(session: AsyncSession, now: datetime) -> int:
    """Jobs left queued/running by a stopped process can never finish: mark them failed."""
    result = await session.execute(
        update(ProcessingJob)
        .where(ProcessingJob.status.in_(("queued", "running")))
        .values(status="failed", error="interrupted: the service stopped before the job finished", updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
