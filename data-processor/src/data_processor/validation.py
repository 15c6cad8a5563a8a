"""Validation of incoming ticks and bars: what is accepted, what is quarantined and why.

The bus already enforces the contracts' types (a message breaking them is dead-lettered whole);
this module checks what a well-typed record can still get wrong: OHLC consistency, prices
outside the day's limits, volume, timestamps outside the session. Nothing is dropped silently:
every rejected record comes back as a ``Rejection`` with a stable reason code.

Real data also has records that are right but unusual — a zero-volume day during a trading
halt, an opening far outside the limits after a split or a relisting. Those are accepted and
come back as ``Flag``s, so consumers can tell them apart from normal bars.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from common.clock import kst_datetime, to_kst
from common.contracts import Bar, Tick
from common.krx import price_limit_rate, tick_size
from data_processor.ticks import EPOCH, TickColumns, from_micros, to_micros

# Reason codes stored in ``quarantine.reason`` (stable: dashboards and alerts key on them).
INVALID_RECORD = "invalid_record"
NON_POSITIVE_PRICE = "non_positive_price"
OHLC_INCONSISTENT = "ohlc_inconsistent"
OUTSIDE_PRICE_LIMITS = "outside_price_limits"
NON_POSITIVE_VOLUME = "non_positive_volume"
ZERO_VOLUME_PRICE_MOVE = "zero_volume_with_price_move"
OUTSIDE_SESSION = "outside_session"
MISALIGNED_TIMESTAMP = "misaligned_timestamp"
DUPLICATE_IN_BATCH = "duplicate_conflict"

# Flags stored in ``bar_flags.flag``.
FLAG_HALT = "halt"
FLAG_CORPORATE_ACTION = "corporate_action"
FLAG_GAP = "gap"
FLAG_AMENDED = "amended"

SESSION_OPEN = time(9, 0)
# The closing auction prints at 15:30:00, so the session is closed at the end: [09:00, 15:30].
SESSION_LAST_PRINT = time(15, 30)
# KRX traded on Saturdays until the end of 2000.
LAST_SATURDAY_SESSION = date(2000, 12, 31)
# No KRX holiday run is longer than this; a longer hole between daily bars is a gap.
MAX_DAILY_HOLE = timedelta(days=10)


@dataclass(frozen=True)
class Rejection:
    """A record that failed validation: where it was in its message, why, and the record itself."""

    position: int
    reason: str
    detail: str
    record: dict[str, Any]
    record_kind: str
    symbol: str | None = None
    timeframe: str | None = None
    ts: datetime | None = None


@dataclass(frozen=True)
class Flag:
    """A fact about an accepted bar (halt, gap, corporate action, amendment)."""

    symbol: str
    timeframe: str
    ts: datetime
    flag: str
    detail: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T", Tick, Bar)


@dataclass
class Checked(Generic[T]):
    """What validation accepted, rejected (with reasons) and flagged."""

    accepted: list[T] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)


def is_trading_day(day: date) -> bool:
    weekday = day.weekday()
    return weekday < 5 or (weekday == 5 and day <= LAST_SATURDAY_SESSION)


def session_day(instant: datetime) -> date:
    """The KST calendar day an instant belongs to."""
    return to_kst(instant).date()


def daily_bar_ts(day: date) -> datetime:
    """Where a daily bar lives: its session's opening instant (09:00 KST) in UTC."""
    return kst_datetime(day, SESSION_OPEN)


def session_close(day: date) -> datetime:
    return kst_datetime(day, SESSION_LAST_PRINT)


# Korea has kept UTC+9 without daylight saving since 1988-10-09; before that, ask the tz database.
_FIXED_KST_SINCE = datetime(1988, 10, 9, tzinfo=UTC)
_KST_OFFSET = timedelta(hours=9)


def kst_wall(instant: datetime) -> datetime:
    """A datetime whose date and time are the KST wall clock of ``instant`` (fast on the hot path)."""
    if instant.tzinfo is UTC and instant >= _FIXED_KST_SINCE:
        return instant + _KST_OFFSET  # still labelled UTC: only .date()/.time() are read
    return to_kst(instant)


def kst_day(instant: datetime) -> date:
    return kst_wall(instant).date()


def in_session(instant: datetime) -> bool:
    local = to_kst(instant)
    return is_trading_day(local.date()) and SESSION_OPEN <= local.time() <= SESSION_LAST_PRINT


def limit_band(base: int, day: date) -> tuple[int, int]:
    """The widest prices allowed on ``day`` for a base (previous close) of ``base``.

    One tick of slack on each side: historical tick tables and rounding rules differed from
    today's, and a validator that rejects real prints is worse than one a tick too lenient.
    """
    rate = price_limit_rate(day)
    slack = tick_size(base)
    upper = int(Decimal(base) * (1 + rate)) + slack
    lower = max(1, int(Decimal(base) * (1 - rate)) - slack)
    return lower, upper


def record_of(model: Tick | Bar) -> dict[str, Any]:
    return model.model_dump(mode="json")


BasePrice = Callable[[str, date], int | None]


def check_ticks(ticks: Sequence[Tick], base_price: BasePrice) -> Checked[Tick]:
    """Accept ticks in session, with positive volume and a price inside the day's limits.

    ``base_price(symbol, day)`` is the previous session's close, or None when unknown (then the
    limit check is skipped: there is nothing to check against, and that is not the tick's fault).
    """
    accepted, rejected = check_tick_columns(TickColumns.of(ticks), base_price)
    return Checked(accepted=[ticks[i] for i in np.flatnonzero(accepted).tolist()], rejected=rejected)


_DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_OPEN_US = 9 * _HOUR_US
_LAST_PRINT_US = 15 * _HOUR_US + 30 * 60_000_000
_FIXED_KST_SINCE_US = to_micros(_FIXED_KST_SINCE)
_EPOCH_ORDINAL = EPOCH.date().toordinal()
_LAST_SATURDAY_DAY = LAST_SATURDAY_SESSION.toordinal() - _EPOCH_ORDINAL
_NAIVE_EPOCH = EPOCH.replace(tzinfo=None)
_OK, _VOLUME, _SESSION, _LIMITS, _DUPLICATE = range(5)


def _kst_micros(columns: TickColumns) -> npt.NDArray[np.int64]:
    """KST wall-clock microseconds of every tick (the tz database for instants before 1988-10-09)."""
    if len(columns) == 0 or int(columns.ts.min()) >= _FIXED_KST_SINCE_US:
        return columns.ts + 9 * _HOUR_US
    return np.fromiter(
        (
            (kst_wall(from_micros(t)).replace(tzinfo=None) - _NAIVE_EPOCH) // timedelta(microseconds=1)
            for t in columns.ts.tolist()
        ),
        dtype=np.int64,
        count=len(columns),
    )


def _symbol_days(
    symbols: npt.NDArray[np.intp], days: npt.NDArray[np.int64]
) -> tuple[list[tuple[int, int]], npt.NDArray[np.intp]]:
    """The distinct (symbol index, day number) pairs, and which pair each entry is."""
    if len(days) == 0:
        return [], np.zeros(0, dtype=np.intp)
    first = int(days.min())
    span = int(days.max()) - first + 1
    keys, which = np.unique(symbols * span + (days - first), return_inverse=True)
    return [(k // span, k % span + first) for k in keys.tolist()], which.reshape(-1)


def tick_days(columns: TickColumns) -> set[tuple[str, date]]:
    """The (symbol, KST day) pairs of a batch: the base prices its validation needs."""
    pairs, _ = _symbol_days(columns.symbol, _kst_micros(columns) // _DAY_US)
    return {(columns.symbols[s], date.fromordinal(d + _EPOCH_ORDINAL)) for s, d in pairs}


def check_tick_columns(columns: TickColumns, base_price: BasePrice) -> tuple[npt.NDArray[np.bool_], list[Rejection]]:
    """``check_ticks`` on columns: which positions are accepted, and the rejections in position order."""
    local = _kst_micros(columns)
    days = local // _DAY_US
    time_of_day = local - days * _DAY_US
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    trading = (weekday < 5) | ((weekday == 5) & (days <= _LAST_SATURDAY_DAY))
    reason = np.full(len(columns), _OK, dtype=np.int8)
    reason[~(trading & (time_of_day >= _OPEN_US) & (time_of_day <= _LAST_PRINT_US))] = _SESSION
    reason[columns.volume <= 0] = _VOLUME

    bands: dict[tuple[int, int], tuple[int, int]] = {}
    candidates = np.flatnonzero(reason == _OK)
    if len(candidates):
        pairs, which = _symbol_days(columns.symbol[candidates], days[candidates])
        lower = np.full(len(pairs), np.iinfo(np.int64).min, dtype=np.int64)
        upper = np.full(len(pairs), np.iinfo(np.int64).max, dtype=np.int64)
        for index, (symbol, day_number) in enumerate(pairs):
            base = base_price(columns.symbols[symbol], date.fromordinal(day_number + _EPOCH_ORDINAL))
            if base is not None:
                lower[index], upper[index] = bands[(symbol, day_number)] = limit_band(
                    base, date.fromordinal(day_number + _EPOCH_ORDINAL)
                )
        price = columns.price[candidates]
        reason[candidates[(price < lower[which]) | (price > upper[which])]] = _LIMITS

    # Same (symbol, ts, seq) as an earlier accepted tick: an exact copy is kept, anything else rejected.
    first_of: dict[int, int] = {}
    accepted = np.flatnonzero(reason == _OK)
    distinct = columns.distinct_identities(accepted)
    if len(distinct) < len(accepted):
        repeated = np.setdiff1d(accepted, distinct, assume_unique=True)
        firsts = {(columns.symbol[i], columns.ts[i], columns.seq[i]): i for i in distinct.tolist()}
        for position in repeated.tolist():
            first = firsts[(columns.symbol[position], columns.ts[position], columns.seq[position])]
            if not columns.same_values(first, position):
                reason[position] = _DUPLICATE
                first_of[position] = first

    rejected = [
        _tick_rejection(
            position,
            columns.tick(position),
            int(reason[position]),
            bands.get((int(columns.symbol[position]), int(days[position]))),
            first_of.get(position),
        )
        for position in np.flatnonzero(reason != _OK).tolist()
    ]
    return reason == _OK, rejected


def _tick_rejection(position: int, tick: Tick, code: int, band: tuple[int, int] | None, first: int | None) -> Rejection:
    local = kst_wall(tick.ts)
    if code == _VOLUME:
        reason, detail = NON_POSITIVE_VOLUME, f"volume {tick.volume}: a trade print has positive volume"
    elif code == _SESSION:
        reason, detail = OUTSIDE_SESSION, f"{local.date()} {local.time()} KST is outside the 09:00–15:30 session"
    elif code == _LIMITS:
        assert band is not None
        reason, detail = OUTSIDE_PRICE_LIMITS, f"price {tick.price} outside the day's band {band[0]}–{band[1]}"
    else:
        reason = DUPLICATE_IN_BATCH
        detail = f"same (symbol, ts, seq) as position {first} with different values"
    return Rejection(position, reason, detail, record_of(tick), "tick", tick.symbol, None, tick.ts)


def check_bars(
    bars: Sequence[Bar], previous_close: Mapping[tuple[str, str], tuple[datetime, int, int]]
) -> Checked[Bar]:
    """Validate bars of any symbols and timeframes; flags halts and corporate-action jumps.

    ``previous_close[(symbol, timeframe)]`` is ``(ts, close, volume)`` of the stored bar just
    before the batch's first bar of that series, if any. Within the batch, bars are checked in
    time order so each one's base is its predecessor's close.
    """
    result: Checked[Bar] = Checked()
    order = sorted(range(len(bars)), key=lambda i: (bars[i].symbol, bars[i].timeframe, bars[i].ts))
    last: dict[tuple[str, str], tuple[datetime, int, int]] = dict(previous_close)
    for position in order:
        bar = bars[position]
        series = (bar.symbol, bar.timeframe)
        reason, detail = _bar_problem(bar)
        flags: list[Flag] = []
        if not reason:
            prior = last.get(series)
            if bar.timeframe == "1d" and prior is not None and prior[0] < bar.ts:
                reason, detail, flags = _daily_limits(bar, prior)
        if reason:
            result.rejected.append(
                Rejection(position, reason, detail, record_of(bar), "bar", bar.symbol, bar.timeframe, bar.ts)
            )
            continue
        result.accepted.append(bar)
        if bar.volume == 0:
            flags.append(Flag(bar.symbol, bar.timeframe, bar.ts, FLAG_HALT, {"close": bar.close}))
        result.flags.extend(flags)
        if series not in last or last[series][0] < bar.ts:
            last[series] = (bar.ts, bar.close, bar.volume)
    return result


def _bar_problem(bar: Bar) -> tuple[str, str]:
    if min(bar.open, bar.high, bar.low, bar.close) <= 0:
        return NON_POSITIVE_PRICE, f"prices must be positive: O={bar.open} H={bar.high} L={bar.low} C={bar.close}"
    if not (bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high):
        return OHLC_INCONSISTENT, f"needs low ≤ open, close ≤ high: O={bar.open} H={bar.high} L={bar.low} C={bar.close}"
    if bar.volume == 0 and bar.high != bar.low:
        return ZERO_VOLUME_PRICE_MOVE, f"no volume but the price moved {bar.low}–{bar.high}"
    local = to_kst(bar.ts)
    if not is_trading_day(local.date()):
        return OUTSIDE_SESSION, f"{local.date().isoformat()} is not a KRX trading day"
    if bar.timeframe == "1d":
        if bar.ts != daily_bar_ts(local.date()):
            return MISALIGNED_TIMESTAMP, f"a daily bar's ts is 09:00 KST of its day, got {local.isoformat()}"
    else:
        if bar.ts.second or bar.ts.microsecond:
            return MISALIGNED_TIMESTAMP, f"a minute bar starts on a whole minute, got {local.isoformat()}"
        if not SESSION_OPEN <= local.time() <= SESSION_LAST_PRINT:
            return OUTSIDE_SESSION, f"{local.isoformat()} is outside the 09:00–15:30 KST session"
    return "", ""


def _daily_limits(bar: Bar, prior: tuple[datetime, int, int]) -> tuple[str, str, list[Flag]]:
    """Check a daily bar against its base; a jump the bar itself is consistent with is a corporate action.

    After a split, a merger or a relisting the exchange resets the base price, so the whole
    bar sits outside the band of the old close while its own range is an ordinary day's. A
    bar whose range alone exceeds a day's limit cannot be real and is rejected.
    """
    _, base, _ = prior
    day = session_day(bar.ts)
    lower, upper = limit_band(base, day)
    if lower <= bar.low and bar.high <= upper:
        return "", "", []
    own_lower, own_upper = limit_band(bar.open, day)
    opened_outside = not lower <= bar.open <= upper
    if opened_outside and own_lower <= bar.low and bar.high <= own_upper:
        ratio = round(bar.open / base, 6)
        flag = Flag(
            bar.symbol, bar.timeframe, bar.ts, FLAG_CORPORATE_ACTION, {"base": base, "open": bar.open, "ratio": ratio}
        )
        return "", "", [flag]
    return (
        OUTSIDE_PRICE_LIMITS,
        f"range {bar.low}–{bar.high} outside the band {lower}–{upper} of the previous close {base}",
        [],
    )


def gap_flags(timeframe: str, series: Sequence[tuple[str, datetime]]) -> list[Flag]:
    """Gap flags for consecutive stored bars ``(symbol, ts)`` of one symbol, in time order.

    Minute bars: a missing minute inside one session day. Daily bars: a hole longer than any
    holiday run. The flag sits on the bar after the hole; nothing is filled in.
    """
    flags: list[Flag] = []
    for (symbol, before), (_, after) in itertools.pairwise(series):
        if timeframe == "1m":
            same_day = session_day(before) == session_day(after)
            missing = int((after - before) / timedelta(minutes=1)) - 1
            if same_day and missing > 0:
                flags.append(
                    Flag(symbol, timeframe, after, FLAG_GAP, {"after": before.isoformat(), "missing": missing})
                )
        elif after - before > MAX_DAILY_HOLE:
            days = (after - before).days
            flags.append(Flag(symbol, timeframe, after, FLAG_GAP, {"after": before.isoformat(), "calendar_days": days}))
    return flags
