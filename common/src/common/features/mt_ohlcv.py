"""Feature set ``mt-ohlcv-v1``: OHLCV-derived features, from bars alone, look-ahead-free and window-limited.

The model-trainer trains on it and the data-processor publishes it live (``features.v1`` with
``feature_set="mt-ohlcv-v1"``); both call this module, so a served model sees the numbers it
was trained on.

Every value at bar ``t`` depends only on bars ``t - LOOKBACK + 1 .. t``: windows are evaluated
exactly (no recursive smoothing, no cumulative sums over the whole history), so any consumer
that has the last ``LOOKBACK`` bars — the inferencer included — gets the same numbers as the
trainer that had 30 years of history. The RSI is therefore Cutler's (simple-average) RSI on a
0–1 scale, not Wilder's recursive one (hence its own name, ``rsi_cutler_14``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FEATURE_SET = "mt-ohlcv-v1"

FEATURE_NAMES: tuple[str, ...] = (
    "log_ret_1",
    "log_ret_5",
    "log_ret_20",
    "vol_20",
    "vol_60",
    "rsi_cutler_14",
    "ma_ratio_5_20",
    "ma_ratio_20_60",
    "close_ma_20",
    "volume_ratio_20",
    "hl_range",
    "gap",
    "close_pos",
)

# The regime clustering looks at rolling return, volatility, volume and trend.
REGIME_FEATURES: tuple[str, ...] = ("log_ret_20", "vol_20", "volume_ratio_20", "ma_ratio_20_60")

# Bars a feature row needs, the current one included (vol_60 needs 60 returns = 61 closes).
LOOKBACK = 61

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FeatureRow:
    """The features of one closed bar."""

    ts: Any
    values: dict[str, float]


def _windows(x: FloatArray, n: int) -> NDArray[np.float64]:
    return np.lib.stride_tricks.sliding_window_view(x, n)


def _rolling_mean(x: FloatArray, n: int) -> FloatArray:
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        out[n - 1 :] = _windows(x, n).mean(axis=1)
    return out


def _rolling_std(x: FloatArray, n: int) -> FloatArray:
    out = np.full(x.shape, np.nan)
    if len(x) >= n:
        out[n - 1 :] = _windows(x, n).std(axis=1)
    return out


def _lagged_log_ratio(close: FloatArray, n: int) -> FloatArray:
    out = np.full(close.shape, np.nan)
    if len(close) > n:
        out[n:] = np.log(close[n:] / close[:-n])
    return out


def feature_matrix(
    open_: NDArray[Any], high: NDArray[Any], low: NDArray[Any], close: NDArray[Any], volume: NDArray[Any]
) -> FloatArray:
    """``[T, len(FEATURE_NAMES)]`` float64; rows before the warm-up (``LOOKBACK - 1`` bars) are NaN."""
    o = np.asarray(open_, dtype=np.float64)
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    t = len(c)
    ret1 = _lagged_log_ratio(c, 1)
    ret1_filled = np.where(np.isnan(ret1), 0.0, ret1)

    vol20 = _rolling_std(ret1_filled, 20)
    vol60 = _rolling_std(ret1_filled, 60)
    # Returns exist from bar 1 on: a window that includes bar 0 is not a full window.
    vol20[:20] = np.nan
    vol60[:60] = np.nan

    diff = np.zeros(t)
    diff[1:] = np.diff(c)
    gains = _rolling_mean(np.maximum(diff, 0.0), 14)
    losses = _rolling_mean(np.maximum(-diff, 0.0), 14)
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0, gains / total, 0.5)
    rsi[:14] = np.nan

    ma5 = _rolling_mean(c, 5)
    ma20 = _rolling_mean(c, 20)
    ma60 = _rolling_mean(c, 60)
    vma20 = _rolling_mean(v, 20)
    gap = np.full(t, np.nan)
    gap[1:] = np.log(o[1:] / c[:-1])
    span = h - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        close_pos = np.where(span > 0, (c - lo) / span, 0.5)

    columns = {
        "log_ret_1": ret1,
        "log_ret_5": _lagged_log_ratio(c, 5),
        "log_ret_20": _lagged_log_ratio(c, 20),
        "vol_20": vol20,
        "vol_60": vol60,
        "rsi_cutler_14": rsi,
        "ma_ratio_5_20": ma5 / ma20 - 1.0,
        "ma_ratio_20_60": ma20 / ma60 - 1.0,
        "close_ma_20": c / ma20 - 1.0,
        "volume_ratio_20": np.log((v + 1.0) / (vma20 + 1.0)),
        "hl_range": np.log(h / lo),
        "gap": gap,
        "close_pos": close_pos,
    }
    matrix = np.stack([columns[name] for name in FEATURE_NAMES], axis=1)
    matrix[: LOOKBACK - 1] = np.nan
    return matrix


def _field(bar: Any, name: str) -> Any:
    if isinstance(bar, Mapping):
        return bar[name]
    return getattr(bar, name)


def compute_features(bars: Sequence[Any]) -> list[FeatureRow]:
    """Feature rows of ``bars`` (oldest first; mappings or objects with ts/date, open, high, low,
    close, volume), one per bar that has a full ``LOOKBACK`` of history. Pure: no I/O, no state."""
    if not bars:
        return []
    ts_key = "ts" if (isinstance(bars[0], Mapping) and "ts" in bars[0]) or hasattr(bars[0], "ts") else "date"
    stamps = [_field(b, ts_key) for b in bars]
    arrays = [np.array([_field(b, k) for b in bars], dtype=np.float64) for k in ("open", "high", "low", "close")]
    volume = np.array([_field(b, "volume") for b in bars], dtype=np.float64)
    matrix = feature_matrix(arrays[0], arrays[1], arrays[2], arrays[3], volume)
    rows: list[FeatureRow] = []
    for i in range(LOOKBACK - 1, len(bars)):
        values = matrix[i]
        if np.isfinite(values).all():
            rows.append(FeatureRow(ts=stamps[i], values=dict(zip(FEATURE_NAMES, map(float, values), strict=True))))
    return rows
