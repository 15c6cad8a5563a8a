"""Technical features of closed bars, with TA-Lib.

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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import talib

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


def compute_range(s: Series, first: int) -> list[dict[str, float | None]]:
    """Feature rows of bars ``first … len(s)-1``: the batch path, one ``features_at`` per bar."""
    return [features_at(s, end) for end in range(first, len(s))]


def rsi(closes: Sequence[int], window: int) -> list[float | None]:
    """``talib.RSI`` over exactly these closes (the first ``window`` values have no RSI)."""
    return _nullable(talib.RSI(np.asarray(closes, dtype=np.float64), timeperiod=window))


def moving_average(closes: Sequence[int], window: int, kind: str) -> list[float | None]:
    """``talib.SMA``/``talib.EMA`` over exactly these closes."""
    function = talib.SMA if kind == "sma" else talib.EMA
    return _nullable(function(np.asarray(closes, dtype=np.float64), timeperiod=window))


def _nullable(values: Array) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]
