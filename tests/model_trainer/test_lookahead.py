"""Look-ahead: features, regimes, forecasts and the agent's decisions on data truncated at a
cut equal the full-data ones up to the cut; the exported policy matches the trained one."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import torch

from common.clock import KST
from model_trainer.a3c import ActorCritic
from model_trainer.config import TrainingConfig
from model_trainer.data import load_csv_dir
from model_trainer.evaluation import agent_policy, run_backtest
from model_trainer.export import ExportedPolicy
from model_trainer.features import FEATURE_NAMES, LOOKBACK, compute_features, feature_matrix
from model_trainer.pipeline import prepare_fold
from model_trainer.scheduler import next_run
from model_trainer.settings import ModelTrainerSettings

from .conftest import tiny_config

CUT = date(2012, 9, 28)


def test_features_on_truncated_bars_equal_the_full_ones_up_to_the_cut(market_dir: Path) -> None:
    full = load_csv_dir(market_dir, ["005930"])[0]
    cut = full.index_of_day(CUT, side="right")
    a = feature_matrix(full.open, full.high, full.low, full.close, full.volume)
    short = full.slice(0, cut)
    b = feature_matrix(short.open, short.high, short.low, short.close, short.volume)
    np.testing.assert_array_equal(a[:cut], b)
    # window-limited: the last LOOKBACK bars alone give the same last row (what the inferencer has)
    tail = full.slice(cut - LOOKBACK, cut)
    c = feature_matrix(tail.open, tail.high, tail.low, tail.close, tail.volume)
    np.testing.assert_allclose(c[-1], b[-1], rtol=1e-12)


def test_compute_features_returns_rows_after_the_warm_up() -> None:
    bars = [
        {"date": f"d{i}", "open": 100 + i, "high": 102 + i, "low": 99 + i, "close": 101 + i, "volume": 1000 + i}
        for i in range(LOOKBACK + 4)
    ]
    rows = compute_features(bars)
    assert len(rows) == 5 and rows[0].ts == f"d{LOOKBACK - 1}"
    assert list(rows[0].values) == list(FEATURE_NAMES)


def test_decisions_on_truncated_data_equal_the_full_data_ones(market_dir: Path) -> None:
    config = TrainingConfig.model_validate(tiny_config(market_dir))
    full = load_csv_dir(market_dir)
    truncated = [s.slice(0, s.index_of_day(CUT, side="right")) for s in full]
    fa = prepare_fold(full, config, config.split)
    fb = prepare_fold(truncated, config, config.split)

    torch.manual_seed(3)
    dim = config.window * len(FEATURE_NAMES) + fa.market.static.shape[1] + 1
    agent = ActorCritic(dim, len(config.actions), 16).eval()
    kwargs = {
        "window": config.window,
        "actions": config.actions,
        "initial_cash": config.initial_cash,
        "rebalance_band": config.rebalance_band,
    }
    for k in range(len(full)):
        n = len(truncated[k])
        a0, b0 = int(fa.market.offsets[k]), int(fb.market.offsets[k])
        np.testing.assert_array_equal(fa.market.window_features[a0 : a0 + n], fb.market.window_features[b0 : b0 + n])
        np.testing.assert_allclose(fa.market.static[a0 : a0 + n], fb.market.static[b0 : b0 + n], atol=1e-6)
    seg_a = [
        (a, min(b, int(fa.market.offsets[k]) + len(truncated[k]) - 1)) for k, (a, b) in enumerate(fa.test_segments)
    ]
    run_a = run_backtest(fa.market, seg_a, agent_policy(agent), **kwargs)  # type: ignore[arg-type]
    run_b = run_backtest(fb.market, fb.test_segments, agent_policy(agent), **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(run_a.position, run_b.position)
    np.testing.assert_array_equal(run_a.value, run_b.value)

    # the exported, self-contained policy computes the trainer's decision from raw features
    policy = torch.jit.script(ExportedPolicy(fa.scaler, fa.regimes, fa.forecaster, agent))
    idx = np.arange(fa.test_segments[0][0], fa.test_segments[0][0] + 6)
    window = idx[:, None] + np.arange(-config.window + 1, 1)[None, :]
    raw = torch.from_numpy(fa.raw_features[window])
    obs = np.concatenate(
        [fa.market.window_features[window].reshape(len(idx), -1), fa.market.static[idx], np.zeros((len(idx), 1))], 1
    ).astype(np.float32)
    h, c = agent.initial_state(len(idx))
    exported = policy(raw, torch.zeros(len(idx), 1), h, c)
    trained = agent(torch.from_numpy(obs), h, c)
    torch.testing.assert_close(exported[0], trained[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(exported[1], trained[1], atol=1e-4, rtol=1e-4)


def test_weekly_schedule_runs_after_the_friday_close_in_kst() -> None:
    settings = ModelTrainerSettings(schedule_enabled=True)
    friday_noon = datetime(2024, 6, 7, 12, 0, tzinfo=KST).astimezone(UTC)
    due = next_run(friday_noon, settings)
    assert due == datetime(2024, 6, 7, 16, 30, tzinfo=KST)
    assert next_run(due, settings) == datetime(2024, 6, 14, 16, 30, tzinfo=KST)
