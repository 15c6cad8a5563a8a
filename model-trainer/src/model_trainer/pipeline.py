"""One walk-forward fold made ready for training: scaler, regimes and forecaster fit on the
fold's training window only, then applied forward to build the ``Market`` the agent sees."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model_trainer.config import Split, TrainingConfig
from model_trainer.data import SymbolBars
from model_trainer.env import CostModel, Market
from model_trainer.features import FEATURE_NAMES, REGIME_FEATURES, feature_matrix
from model_trainer.forecaster import Forecaster, ForecastReport, fit_forecaster, forecast_all
from model_trainer.regimes import RegimeModel, fit_regimes

CLIP = 5.0
REGIME_COLUMNS = [FEATURE_NAMES.index(n) for n in REGIME_FEATURES]


@dataclass(frozen=True)
class Scaler:
    mean: NDArray[np.float64]
    std: NDArray[np.float64]

    def apply(self, x: NDArray[Any]) -> NDArray[np.float64]:
        return np.asarray(np.clip((x - self.mean) / self.std, -CLIP, CLIP))


@dataclass
class Fold:
    """A prepared fold: the market plus what was fit on its training window."""

    index: int
    split: Split
    market: Market
    raw_features: NDArray[np.float32]  # [T, F] un-normalised, aligned with the market
    regime_labels: NDArray[np.int64]  # [T] argmax regime per bar
    scaler: Scaler
    regimes: RegimeModel
    forecaster: Forecaster
    forecast_report: ForecastReport
    train_ranges: list[tuple[int, int]]
    val_segments: list[tuple[int, int]]
    test_segments: list[tuple[int, int]]


def cost_model(config: TrainingConfig) -> CostModel:
    c = config.costs
    kwargs: dict[str, Any] = {}
    if c.sell_tax_schedule is not None:
        kwargs["sell_tax_schedule"] = tuple(sorted(c.sell_tax_schedule))
    return CostModel(
        commission_rate=c.commission_rate,
        slippage_ticks=c.slippage_ticks,
        price_limits=c.price_limits,
        legacy_limit_rate=c.legacy_limit_rate,
        **kwargs,
    )


def walk_forward_splits(config: TrainingConfig) -> list[Split]:
    """The configured split, or ``n`` consecutive test chunks each with its own train/validation.

    Fold ``i`` tests chunk ``i``; its validation is the same length as the configured one and
    ends the day before the chunk; training ends the day before validation (the embargo then
    trims the training data).
    """
    s, n = config.split, config.walk_forward_folds
    if n == 1:
        return [s]
    span = (s.test_end - s.test_start).days + 1
    val_len = (s.val_end - s.val_start).days + 1
    splits = []
    for i in range(n):
        test_start = s.test_start + timedelta(days=span * i // n)
        test_end = s.test_start + timedelta(days=span * (i + 1) // n - 1)
        val_end = test_start - timedelta(days=1)
        val_start = val_end - timedelta(days=val_len - 1)
        splits.append(
            Split(
                train_start=s.train_start,
                train_end=val_start - timedelta(days=1),
                val_start=val_start,
                val_end=val_end,
                test_start=test_start,
                test_end=test_end,
            )
        )
    return splits


def train_cut(bars: SymbolBars, split: Split, embargo: int) -> int:
    """Last index usable for training: on or before train_end and ``embargo`` bars before validation."""
    last_train = bars.index_of_day(split.train_end, side="right") - 1
    first_val = bars.index_of_day(split.val_start)
    return min(last_train, first_val - embargo - 1)


def prepare_fold(
    series: Sequence[SymbolBars], config: TrainingConfig, split: Split, index: int = 0, seed: int = 0
) -> Fold:
    window, horizon = config.window, config.forecaster.horizon
    raw = [feature_matrix(s.open, s.high, s.low, s.close, s.volume) for s in series]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in series])]).astype(np.int64)
    starts = [s.index_of_day(split.train_start) if split.train_start else 0 for s in series]
    cuts = [train_cut(s, split, config.effective_embargo) for s in series]

    train_rows = np.concatenate([r[a : c + 1] for r, a, c in zip(raw, starts, cuts, strict=True) if c >= a])
    train_rows = train_rows[np.isfinite(train_rows).all(axis=1)]
    if len(train_rows) < 100:
        raise ValueError(f"only {len(train_rows)} complete training rows before {split.train_end}")
    std = train_rows.std(axis=0)
    scaler = Scaler(train_rows.mean(axis=0), np.where(std > 1e-12, std, 1.0))
    z = [scaler.apply(r) for r in raw]

    regimes = fit_regimes(
        scaler.apply(train_rows)[:, REGIME_COLUMNS], method=config.regimes.method, k=config.regimes.k, seed=seed
    )
    static_regime = []
    for zz in z:
        probs = np.full((len(zz), regimes.k), 1.0 / regimes.k)
        ok = np.isfinite(zz).all(axis=1)
        if ok.any():
            probs[ok] = regimes.proba(zz[ok][:, REGIME_COLUMNS])
        static_regime.append(probs)

    # A provisional market (no forecast yet) gives the global index layout and first_valid.
    costs = cost_model(config)
    zeros = [np.zeros((len(s), 2)) for s in series]
    layout = Market.build(
        series, z, [np.hstack([p, f]) for p, f in zip(static_regime, zeros, strict=True)], window, costs
    )

    targets = np.full(int(offsets[-1]), np.nan)
    train_idx: list[NDArray[np.int64]] = []
    for k, s in enumerate(series):
        c = s.close.astype(np.float64)
        y = np.full(len(s), np.nan)
        y[:-horizon] = np.log(c[horizon:] / c[:-horizon])
        targets[offsets[k] : offsets[k + 1]] = y
        first = max(int(layout.first_valid[k]), int(offsets[k]) + starts[k])
        last = int(offsets[k]) + cuts[k] - horizon  # the label's horizon stays inside training
        if last >= first:
            train_idx.append(np.arange(first, last + 1, dtype=np.int64))
    all_train = np.concatenate(train_idx) if train_idx else np.zeros(0, dtype=np.int64)
    if len(all_train) < 100:
        raise ValueError("too few training windows for the forecaster")
    fp = config.forecaster
    forecaster, report = fit_forecaster(
        layout.window_features,
        targets,
        all_train,
        window=window,
        hidden=fp.hidden,
        epochs=fp.epochs,
        max_samples=fp.max_samples,
        seed=seed,
    )
    valid = np.concatenate(
        [np.arange(int(layout.first_valid[k]), int(offsets[k + 1]), dtype=np.int64) for k in range(len(series))]
    )
    forecasts = np.zeros((int(offsets[-1]), 2), dtype=np.float32)
    forecasts[valid] = forecast_all(forecaster, layout.window_features, valid, window)
    regime_all = np.concatenate(static_regime)
    market = Market.build(
        series,
        z,
        [
            np.hstack([regime_all[offsets[k] : offsets[k + 1]], forecasts[offsets[k] : offsets[k + 1]]])
            for k in range(len(series))
        ],
        window,
        costs,
    )

    def segments(start: date, end: date) -> list[tuple[int, int]]:
        out = []
        for k in range(len(series)):
            a, b = market.day_range(k, start, end)
            if b - a >= 1:
                out.append((a, b))
        return out

    train_ranges = []
    for k in range(len(series)):
        a = max(int(market.first_valid[k]), int(offsets[k]) + starts[k])
        b = int(offsets[k]) + cuts[k]
        if b - a >= 2:
            train_ranges.append((a, b))
    return Fold(
        index=index,
        split=split,
        market=market,
        raw_features=np.concatenate(raw).astype(np.float32),
        regime_labels=regime_all.argmax(axis=1).astype(np.int64),
        scaler=scaler,
        regimes=regimes,
        forecaster=forecaster,
        forecast_report=report,
        train_ranges=train_ranges,
        val_segments=segments(split.val_start, split.val_end),
        test_segments=segments(split.test_start, split.test_end),
    )
