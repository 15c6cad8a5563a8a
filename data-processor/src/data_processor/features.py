"""Feature sets of closed bars: ``ta.v1`` (TA-Lib, here) and ``mt-ohlcv-v1`` (the trainer's, from ``common``).

The feature row of bar ``t`` is a pure function of the ``WINDOW`` bars ending at ``t``
(``features_at``). Incremental updates (one bar closes) and batch recomputation (a whole
history) call that same function on the same slice, so they agree bit for bit, and nothing
after ``t`` can leak into row ``t``. The price of that guarantee: recursive indicators (EMA,
RSI, MACD, ATR) start their recursion at the window's first bar instead of at the first bar
ever stored — with 250 bars of warm-up the difference is far below any signal.

Arrays are float64 copies of the integer KRW prices; TA-Lib releases the GIL, so callers run
this in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import talib

from common.features import mt_ohlcv

FEATURE_SET = "ta.v1"
WINDOW = 250
RETURN_HORIZONS = (1, 5, 20)
VOLATILITY_WINDOW = 20
VOLUME_WINDOW = 20

Array = npt.NDArray[np.float64]

FEATURE_NAMES: tuple[str, ...] = (
    "sma_5",
    "sma_20",
    "sma_60",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "bb_percent_b",
    "atr_14",
    "obv",
    "stoch_k",
    "stoch_d",
    *(f"ret_{h}" for h in RETURN_HORIZONS),
    *(f"logret_{h}" for h in RETURN_HORIZONS),
    f"realized_vol_{VOLATILITY_WINDOW}",
    f"volume_ratio_{VOLUME_WINDOW}",
    "vwap",
    "bars_in_window",
)


@dataclass(frozen=True)
class Series:
    """Bars of one symbol and timeframe in time order, as float64 arrays (``value`` NaN when unknown)."""

    open: Array
    high: Array
    low: Array
    close: Array
    volume: Array
    value: Array

    @classmethod
    def of(cls, rows: Sequence[tuple[int, int, int, int, int, int | None]]) -> Series:
        """From ``(open, high, low, close, volume, value)`` integer rows."""
        data = np.array(
            [(o, h, lo, c, v, math.nan if val is None else val) for o, h, lo, c, v, val in rows], dtype=np.float64
        ).reshape(-1, 6)
        columns = [np.ascontiguousarray(data[:, i]) for i in range(6)]
        return cls(*columns)

    def __len__(self) -> int:
        return len(self.close)

    def window(self, end: int, size: int = WINDOW) -> Series:
        """The ``size`` bars ending at index ``end`` (inclusive); fewer at the start of history."""
        start = max(0, end + 1 - size)
        return Series(
            *(
                np.ascontiguousarray(a[start : end + 1])
                for a in (self.open, self.high, self.low, self.close, self.volume, self.value)
            )
        )


def _last(values: Array) -> float | None:
    value = float(values[-1])
    return None if math.isnan(value) or math.isinf(value) else value


def _ratio(numerator: float, denominator: float) -> float | None:
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator - 1


def features_at(s: Series, end: int) -> dict[str, float | None]:
    """The features of bar ``end`` of ``s``, computed only from bars ``end-WINDOW+1 … end``."""
    return compute(s.window(end))


def compute(w: Series) -> dict[str, float | None]:
    """Features of the last bar of ``w`` (the whole of ``w`` is its history)."""
    close, high, low, volume = w.close, w.high, w.low, w.volume
    n = len(close)
    macd, signal, hist = talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    stoch_k, stoch_d = talib.STOCH(high, low, close, fastk_period=14, slowk_period=3, slowd_period=3)
    out: dict[str, float | None] = {
        "sma_5": _last(talib.SMA(close, timeperiod=5)),
        "sma_20": _last(middle),
        "sma_60": _last(talib.SMA(close, timeperiod=60)),
        "ema_12": _last(talib.EMA(close, timeperiod=12)),
        "ema_26": _last(talib.EMA(close, timeperiod=26)),
        "rsi_14": _last(talib.RSI(close, timeperiod=14)),
        "macd": _last(macd),
        "macd_signal": _last(signal),
        "macd_hist": _last(hist),
        "bb_upper": _last(upper),
        "bb_middle": _last(middle),
        "bb_lower": _last(lower),
        "bb_percent_b": None,
        "atr_14": _last(talib.ATR(high, low, close, timeperiod=14)),
        "obv": _last(talib.OBV(close, volume)),
        "stoch_k": _last(stoch_k),
        "stoch_d": _last(stoch_d),
    }
    band_upper, band_lower = out["bb_upper"], out["bb_lower"]
    if band_upper is not None and band_lower is not None and band_upper != band_lower:
        out["bb_percent_b"] = (float(close[-1]) - band_lower) / (band_upper - band_lower)
    last_close = float(close[-1])
    for h in RETURN_HORIZONS:
        before = float(close[-1 - h]) if n > h else math.nan
        simple = _ratio(last_close, before)
        out[f"ret_{h}"] = simple
        out[f"logret_{h}"] = None if simple is None else math.log(last_close / before)
    if n > VOLATILITY_WINDOW:
        tail = close[-VOLATILITY_WINDOW - 1 :]
        log_returns = np.log(tail[1:] / tail[:-1])
        out[f"realized_vol_{VOLATILITY_WINDOW}"] = float(np.std(log_returns, ddof=1))
    else:
        out[f"realized_vol_{VOLATILITY_WINDOW}"] = None
    average_volume = _last(talib.SMA(volume, timeperiod=VOLUME_WINDOW)) if n >= VOLUME_WINDOW else None
    out[f"volume_ratio_{VOLUME_WINDOW}"] = float(volume[-1]) / average_volume if average_volume else None
    last_value, last_volume = float(w.value[-1]), float(volume[-1])
    out["vwap"] = last_value / last_volume if last_volume > 0 and not math.isnan(last_value) else None
    out["bars_in_window"] = float(n)
    return out


# TA-Lib's SMA and OBV keep running sums. Over integer KRW prices and share volumes those
# sums are exact in float64 while they stay below 2**53, so one call over the whole series gives
# every window's value bit for bit; above this price (squares summed over 20 bars) we fall back
# to one call per window.
EXACT_SUM_PRICE_LIMIT = 2.0e7
_PER_WINDOW = (
    *("ema_12", "ema_26", "rsi_14", "macd", "macd_signal", "macd_hist"),
    *("bb_upper", "bb_lower", "atr_14", "stoch_k", "stoch_d"),
)


def compute_range(s: Series, first: int) -> list[dict[str, float | None]]:
    """Feature rows of bars ``first … len(s)-1``, each bit-identical to ``features_at(s, end)``.

    Recursive indicators (EMA, RSI, MACD, ATR, STOCH) restart at every window's first bar, and
    TA-Lib's Bollinger deviation is not a running sum, so TA-Lib runs once per window for them;
    the window-local rest is computed for the whole range at once (see ``EXACT_SUM_PRICE_LIMIT``).
    """
    total = len(s)
    count = total - first
    if count <= 0:
        return []
    close, high, low, volume = s.close, s.high, s.low, s.volume
    columns: dict[str, Array] = {name: np.empty(count) for name in _PER_WINDOW}
    for i, end in enumerate(range(first, total)):
        start = max(0, end + 1 - WINDOW)
        c, h, lo = close[start : end + 1], high[start : end + 1], low[start : end + 1]
        macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
        upper, _, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
        columns["bb_upper"][i], columns["bb_lower"][i] = upper[-1], lower[-1]
        stoch_k, stoch_d = talib.STOCH(h, lo, c, fastk_period=14, slowk_period=3, slowd_period=3)
        columns["ema_12"][i] = talib.EMA(c, timeperiod=12)[-1]
        columns["ema_26"][i] = talib.EMA(c, timeperiod=26)[-1]
        columns["rsi_14"][i] = talib.RSI(c, timeperiod=14)[-1]
        columns["macd"][i], columns["macd_signal"][i], columns["macd_hist"][i] = macd[-1], signal[-1], hist[-1]
        columns["atr_14"][i] = talib.ATR(h, lo, c, timeperiod=14)[-1]
        columns["stoch_k"][i], columns["stoch_d"][i] = stoch_k[-1], stoch_d[-1]
    columns.update(_window_local(s, first))

    ends = np.arange(first, total)
    bars = np.minimum(ends + 1, WINDOW).astype(np.float64)
    last = close[first:]
    upper, lower = columns["bb_upper"], columns["bb_lower"]
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["bb_percent_b"] = np.where(upper != lower, (last - lower) / (upper - lower), np.nan)
        for horizon in RETURN_HORIZONS:
            before = np.where(bars > horizon, close[np.maximum(ends - horizon, 0)], np.nan)
            columns[f"ret_{horizon}"] = np.where(before != 0, last / before - 1, np.nan)
            # math.log, not np.log: numpy's vectorised log may differ from libm's in the last bit.
            ratios = (last / before).tolist()
            columns[f"logret_{horizon}"] = np.array([math.log(q) if q == q else math.nan for q in ratios])
        log_returns = np.full(total, np.nan)
        log_returns[1:] = np.log(close[1:] / close[:-1])
        vol = np.full(total, np.nan)
        if total > VOLATILITY_WINDOW:
            vol[VOLATILITY_WINDOW:] = np.lib.stride_tricks.sliding_window_view(log_returns[1:], VOLATILITY_WINDOW).std(
                axis=1, ddof=1
            )
        columns[f"realized_vol_{VOLATILITY_WINDOW}"] = np.where(bars > VOLATILITY_WINDOW, vol[first:], np.nan)
        average_volume = columns.pop("_volume_sma")
        ratio = volume[first:] / average_volume
        columns[f"volume_ratio_{VOLUME_WINDOW}"] = np.where(average_volume != 0, ratio, np.nan)
        value, traded = s.value[first:], volume[first:]
        columns["vwap"] = np.where(traded > 0, value / traded, np.nan)
    columns["bars_in_window"] = bars

    matrix = np.stack([columns[name] for name in FEATURE_NAMES], axis=1)
    matrix[~np.isfinite(matrix)] = np.nan
    return [
        {name: (None if v != v else v) for name, v in zip(FEATURE_NAMES, row, strict=True)}
        for row in matrix.tolist()
    ]


def _window_local(s: Series, first: int) -> dict[str, Array]:
    """SMA 5/20/60, Bollinger bands, OBV and the volume SMA of bars ``first…`` (running sums: exact)."""
    close, volume = s.close, s.volume
    if len(close) and float(np.max(close)) >= EXACT_SUM_PRICE_LIMIT:
        return _window_local_per_window(s, first)
    middle = talib.SMA(close, timeperiod=20)
    out = {
        "sma_5": talib.SMA(close, timeperiod=5)[first:],
        "sma_20": middle[first:],
        "sma_60": talib.SMA(close, timeperiod=60)[first:],
        "bb_middle": middle[first:],
        "_volume_sma": talib.SMA(volume, timeperiod=VOLUME_WINDOW)[first:],
    }
    # OBV of a window: its first bar's volume, then ± each later bar's volume by the close's move.
    signed = np.zeros(len(close))
    signed[1:] = np.sign(np.diff(close)) * volume[1:]
    cumulative = np.cumsum(signed)
    ends = np.arange(first, len(close))
    starts = np.maximum(0, ends + 1 - WINDOW)
    out["obv"] = volume[starts] + cumulative[ends] - cumulative[starts]
    return out


def _window_local_per_window(s: Series, first: int) -> dict[str, Array]:
    names = ("sma_5", "sma_20", "sma_60", "bb_middle", "_volume_sma", "obv")
    out = {name: np.empty(len(s) - first) for name in names}
    for i, end in enumerate(range(first, len(s))):
        start = max(0, end + 1 - WINDOW)
        c, v = s.close[start : end + 1], s.volume[start : end + 1]
        out["sma_5"][i] = talib.SMA(c, timeperiod=5)[-1]
        out["sma_20"][i] = out["bb_middle"][i] = talib.SMA(c, timeperiod=20)[-1]
        out["sma_60"][i] = talib.SMA(c, timeperiod=60)[-1]
        out["_volume_sma"][i] = talib.SMA(v, timeperiod=VOLUME_WINDOW)[-1]
        out["obv"][i] = talib.OBV(c, v)[-1]
    return out


def mt_ohlcv_range(s: Series, first: int) -> list[dict[str, float | None]]:
    """``mt-ohlcv-v1`` rows of bars ``first…``: the trainer's own ``feature_matrix`` over the bars they need.

    Row ``t`` depends only on bars ``t-LOOKBACK+1 … t`` (None while fewer than ``LOOKBACK`` bars
    exist), so this equals the trainer's computation over the symbol's whole history.
    """
    if first >= len(s):
        return []
    start = max(0, first - (mt_ohlcv.LOOKBACK - 1))
    matrix = mt_ohlcv.feature_matrix(s.open[start:], s.high[start:], s.low[start:], s.close[start:], s.volume[start:])
    matrix = matrix[first - start :]
    matrix[~np.isfinite(matrix)] = np.nan
    names = mt_ohlcv.FEATURE_NAMES
    return [{n: (None if v != v else v) for n, v in zip(names, row, strict=True)} for row in matrix.tolist()]


@dataclass(frozen=True)
class FeatureSet:
    """A published feature set: its name, its columns, the bars a row needs, and the batch computation."""

    name: str
    names: tuple[str, ...]
    lookback: int
    compute_range: Callable[[Series, int], list[dict[str, float | None]]]


FEATURE_SETS: dict[str, FeatureSet] = {
    FEATURE_SET: FeatureSet(FEATURE_SET, FEATURE_NAMES, WINDOW, compute_range),
    mt_ohlcv.FEATURE_SET: FeatureSet(mt_ohlcv.FEATURE_SET, mt_ohlcv.FEATURE_NAMES, mt_ohlcv.LOOKBACK, mt_ohlcv_range),
}


def rsi(closes: Sequence[int], window: int) -> list[float | None]:
    """``talib.RSI`` over exactly these closes (the first ``window`` values have no RSI)."""
    return _nullable(talib.RSI(np.asarray(closes, dtype=np.float64), timeperiod=window))


def moving_average(closes: Sequence[int], window: int, kind: str) -> list[float | None]:
    """``talib.SMA``/``talib.EMA`` over exactly these closes."""
    function = talib.SMA if kind == "sma" else talib.EMA
    return _nullable(function(np.asarray(closes, dtype=np.float64), timeperiod=window))


def _nullable(values: Array) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]
