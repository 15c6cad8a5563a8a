"""Bars for training and backtests: loaded from the ``bars`` table or from a folder of CSV files.

A ``SymbolBars`` holds one symbol's bars as numpy arrays (integer KRW prices). ``data_hash``
fingerprints exactly what a model was trained and evaluated on.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.clock import KST
from common.db import BarRecord
from common.errors import InvalidInput

SYMBOL_FILE = re.compile(r"^(\d{6})\.csv$")
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class SymbolBars:
    """One symbol's bars, oldest first. ``days`` are KST trading dates (what the KRX rules key on)."""

    symbol: str
    timeframe: str
    stamps: NDArray[np.int64]  # epoch seconds UTC of each bar's opening instant
    days: NDArray[Any]  # datetime64[D], KST date of each bar
    open: IntArray
    high: IntArray
    low: IntArray
    close: IntArray
    volume: IntArray

    def __len__(self) -> int:
        return len(self.close)

    def slice(self, start: int, stop: int) -> SymbolBars:
        return SymbolBars(
            self.symbol,
            self.timeframe,
            self.stamps[start:stop],
            self.days[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            self.volume[start:stop],
        )

    def index_of_day(self, day: date, *, side: str = "left") -> int:
        """First bar on or after ``day`` (side="left") or first bar after it (side="right")."""
        return int(np.searchsorted(self.days, np.datetime64(day, "D"), side=side))  # type: ignore[call-overload]

    def previous_session_close(self) -> IntArray:
        """For each bar, the close of the last bar of the previous trading day (KRX's limit base);
        the bar's own open for the very first day, which has no base."""
        day_start = np.ones(len(self), dtype=bool)
        day_start[1:] = self.days[1:] != self.days[:-1]
        starts = np.flatnonzero(day_start)
        base_per_day = np.empty(len(starts), dtype=np.int64)
        base_per_day[0] = self.open[0]
        base_per_day[1:] = self.close[starts[1:] - 1]
        day_index = np.cumsum(day_start) - 1
        return np.asarray(base_per_day[day_index], dtype=np.int64)


def _from_rows(symbol: str, timeframe: str, rows: Sequence[tuple[datetime, int, int, int, int, int]]) -> SymbolBars:
    stamps = np.array([int(r[0].timestamp()) for r in rows], dtype=np.int64)
    days = np.array([r[0].astimezone(KST).date() for r in rows], dtype="datetime64[D]")
    cols = np.array([r[1:] for r in rows], dtype=np.int64).reshape(len(rows), 5)
    return SymbolBars(symbol, timeframe, stamps, days, cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], cols[:, 4])


def load_csv_dir(
    folder: Path, symbols: Sequence[str] | None = None, start: date | None = None, end: date | None = None
) -> list[SymbolBars]:
    """Daily bars from ``<folder>/<symbol>.csv`` (``date,open,high,low,close,volume``).

    Only six-digit symbol files are stocks (an index file such as ``kospi.csv`` is skipped).
    A day's bar is stamped at the 09:00 KST open, as the ``bars`` table stores daily bars.
    """
    if not folder.is_dir():
        raise InvalidInput(f"data folder {folder} does not exist")
    available = {m.group(1): p for p in folder.iterdir() if (m := SYMBOL_FILE.match(p.name))}
    wanted = list(symbols) if symbols else sorted(available)
    missing = [s for s in wanted if s not in available]
    if missing:
        raise InvalidInput(f"no bars for {', '.join(missing)} in {folder}", detail={"missing": missing})
    result: list[SymbolBars] = []
    for symbol in wanted:
        rows: list[tuple[datetime, int, int, int, int, int]] = []
        with available[symbol].open(newline="") as handle:
            for record in csv.DictReader(handle):
                day = date.fromisoformat(record["date"])
                if (start and day < start) or (end and day > end):
                    continue
                stamp = datetime.combine(day, time(9, 0), tzinfo=KST).astimezone(UTC)
                values = (record["open"], record["high"], record["low"], record["close"], record["volume"])
                o, h, lo, c, v = (int(float(x)) for x in values)
                rows.append((stamp, o, h, lo, c, v))
        rows.sort(key=lambda r: r[0])
        if rows:
            result.append(_from_rows(symbol, "1d", rows))
    return result


async def load_db_bars(
    session: AsyncSession,
    symbols: Sequence[str],
    timeframe: str,
    start: date | None = None,
    end: date | None = None,
) -> list[SymbolBars]:
    """Bars from the ``bars`` table, one ``SymbolBars`` per symbol that has any."""
    result: list[SymbolBars] = []
    for symbol in symbols:
        query = select(
            BarRecord.ts, BarRecord.open, BarRecord.high, BarRecord.low, BarRecord.close, BarRecord.volume
        ).where(BarRecord.symbol == symbol, BarRecord.timeframe == timeframe)
        if start is not None:
            query = query.where(BarRecord.ts >= datetime.combine(start, time(0), tzinfo=KST))
        if end is not None:
            query = query.where(BarRecord.ts < datetime.combine(end, time(23, 59, 59), tzinfo=KST))
        rows = (await session.execute(query.order_by(BarRecord.ts))).all()
        if rows:
            result.append(_from_rows(symbol, timeframe, [tuple(r) for r in rows]))  # type: ignore[misc]
    return result


def data_hash(series: Sequence[SymbolBars]) -> str:
    """sha256 over every symbol's timestamps and OHLCV, in symbol order."""
    digest = hashlib.sha256()
    for s in sorted(series, key=lambda x: x.symbol):
        digest.update(f"{s.symbol}:{s.timeframe}:{len(s)}".encode())
        for array in (s.stamps, s.open, s.high, s.low, s.close, s.volume):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
