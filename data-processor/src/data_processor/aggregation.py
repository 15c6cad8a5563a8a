"""Ticks into 1-minute bars and minute bars into daily bars.

A bar is always recomputed from everything stored for its interval, never patched with the
new prints alone: duplicates, out-of-order and late ticks then all give the bar it would have
had if every print had arrived on time. On PostgreSQL the same aggregation runs in SQL
(``repository``); these functions are the reference and the SQLite path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from data_processor.ticks import INT64_MAX, MINUTE_US, Positions, TickColumns, from_micros
from data_processor.validation import daily_bar_ts, session_close, session_day

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class BarRow:
    """One stored bar; ``value`` is the traded value in KRW, so VWAP is ``value / volume``."""

    symbol: str
    timeframe: str
    ts: datetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int | None

    @property
    def vwap(self) -> float | None:
        if not self.volume or self.value is None:
            return None
        return self.value / self.volume


# (symbol, ts, seq, price, volume)
TickRow = tuple[str, datetime, int, int, int]


def minute_of(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def minute_bars(ticks: Iterable[TickRow]) -> list[BarRow]:
    """1-minute bars of ``ticks`` (any order, no duplicates): open/close by (ts, seq)."""
    ordered = sorted(ticks, key=lambda t: (t[0], t[1], t[2]))
    bars: list[BarRow] = []
    key: tuple[str, datetime] | None = None
    minute_number = -1
    o = h = lo = c = v = value = 0
    for symbol, ts, _, price, volume in ordered:
        # Integer minute numbers are much cheaper than building a datetime per tick.
        number = int(ts.timestamp()) // 60
        if key is None or number != minute_number or symbol != key[0]:
            if key is not None:
                bars.append(BarRow(key[0], "1m", key[1], o, h, lo, c, v, value))
            key, minute_number = (symbol, minute_of(ts)), number
            o, h, lo, v, value = price, price, price, 0, 0
        h, lo, c = max(h, price), min(lo, price), price
        v += volume
        value += price * volume
    if key is not None:
        bars.append(BarRow(key[0], "1m", key[1], o, h, lo, c, v, value))
    return bars


def minute_bars_of(columns: TickColumns, positions: Positions) -> list[BarRow]:
    """``minute_bars`` of the ticks at ``positions``, which are distinct and ordered by (symbol, ts, seq)."""
    if len(positions) == 0:
        return []
    symbol = columns.symbol[positions]
    minute = columns.ts[positions] // MINUTE_US
    price, volume = columns.price[positions], columns.volume[positions]
    starts_new = np.ones(len(positions), dtype=bool)
    starts_new[1:] = (symbol[1:] != symbol[:-1]) | (minute[1:] != minute[:-1])
    starts = np.flatnonzero(starts_new)
    ends = np.append(starts[1:], len(positions)) - 1
    # Traded value in int64 unless it could overflow; then exact Python integers.
    fits = int(price.max()) * int(volume.sum()) <= INT64_MAX
    traded = price * volume if fits else price.astype(object) * volume.astype(object)
    highs = np.maximum.reduceat(price, starts).tolist()
    lows = np.minimum.reduceat(price, starts).tolist()
    volumes = np.add.reduceat(volume, starts).tolist()
    values = np.add.reduceat(traded, starts).tolist()
    opens, closes = price[starts].tolist(), price[ends].tolist()
    names, numbers = symbol[starts].tolist(), minute[starts].tolist()
    return [
        BarRow(
            columns.symbols[names[i]],
            "1m",
            from_micros(numbers[i] * MINUTE_US),
            opens[i],
            highs[i],
            lows[i],
            closes[i],
            volumes[i],
            int(values[i]),
        )
        for i in range(len(starts))
    ]


def daily_bars(minutes: Iterable[BarRow]) -> list[BarRow]:
    """Daily bars (at 09:00 KST of their day) of 1-minute bars."""
    ordered = sorted(minutes, key=lambda b: (b.symbol, b.ts))
    bars: list[BarRow] = []
    group: list[BarRow] = []
    for bar in ordered:
        if group and (group[0].symbol != bar.symbol or session_day(group[0].ts) != session_day(bar.ts)):
            bars.append(_merge(group))
            group = []
        group.append(bar)
    if group:
        bars.append(_merge(group))
    return bars


def _merge(group: list[BarRow]) -> BarRow:
    first, last = group[0], group[-1]
    values = [b.value for b in group]
    return BarRow(
        first.symbol,
        "1d",
        daily_bar_ts(session_day(first.ts)),
        first.open,
        max(b.high for b in group),
        min(b.low for b in group),
        last.close,
        sum(b.volume for b in group),
        None if any(v is None for v in values) else sum(v for v in values if v is not None),
    )


def minute_is_closed(minute: datetime, watermark: datetime) -> bool:
    """Whether the minute bar starting at ``minute`` is complete, given the latest print seen.

    A later print closes it; the closing auction's minute (15:30 KST) closes with its own print.
    """
    if watermark >= minute + MINUTE:
        return True
    return minute == session_close(session_day(minute)) and watermark >= minute


def day_is_closed(day_ts: datetime, watermark: datetime) -> bool:
    """Whether the session of the daily bar at ``day_ts`` is over, given the latest print seen."""
    return watermark >= session_close(session_day(day_ts))
