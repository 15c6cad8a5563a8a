"""Backtests through the training environment, baselines, and the metrics of the report.

Every strategy — the agent and each baseline — runs in the same ``VecTradingEnv`` over the
same segments with the same costs, one environment per symbol, all stepped at once. The
report's portfolio is the equal-weight basket of the per-symbol books.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from model_trainer.a3c import ActorCritic
from model_trainer.env import Market, VecTradingEnv
from model_trainer.features import FEATURE_NAMES

TRADING_DAYS = 252
BASELINES = ("buy_and_hold", "ma_crossover", "rsi_rule", "random")

# A policy sees the env (for its cursor and raw signals) and the observation; returns action indices.
Policy = Callable[[VecTradingEnv, NDArray[np.float32]], NDArray[np.int64]]


@dataclass
class Backtest:
    """Per-environment, per-step records of one strategy's run (``[steps, envs]``, NaN-free)."""

    days: NDArray[Any]  # date of each step's fill/valuation bar
    log_return: NDArray[np.float64]
    value: NDArray[np.float64]
    position: NDArray[np.float64]
    traded: NDArray[np.float64]
    costs: NDArray[np.float64]
    regime: NDArray[np.int64]
    active: NDArray[np.bool_]
    initial_cash: int
    bars: int


def run_backtest(
    market: Market,
    segments: Sequence[tuple[int, int]],
    policy: Policy,
    *,
    window: int,
    actions: Sequence[float],
    initial_cash: int,
    rebalance_band: float,
    regime_labels: NDArray[np.int64] | None = None,
) -> Backtest:
    env = VecTradingEnv(
        market,
        window=window,
        actions=actions,
        initial_cash=initial_cash,
        rebalance_band=rebalance_band,
        segments=segments,
    )
    obs = env.reset()
    steps = int(max(b - a for a, b in segments))
    shape = (steps, env.n)
    days = np.empty(shape, dtype="datetime64[D]")
    rec = {k: np.zeros(shape) for k in ("log_return", "value", "position", "traded", "costs")}
    regime = np.zeros(shape, dtype=np.int64)
    active = np.zeros(shape, dtype=bool)
    for k in range(steps):
        live = ~env.done
        decided_at = env.cursor.copy()
        action = policy(env, obs)
        obs, _, _, info = env.step(action)
        active[k] = live
        days[k] = market.days[env.cursor]
        rec["log_return"][k] = info.log_return
        rec["value"][k] = info.value
        rec["position"][k] = env.position()
        rec["traded"][k] = info.traded_value
        rec["costs"][k] = info.costs
        if regime_labels is not None:
            regime[k] = regime_labels[decided_at]
    bars = int(active.sum())
    return Backtest(
        days,
        rec["log_return"],
        rec["value"],
        rec["position"],
        rec["traded"],
        rec["costs"],
        regime,
        active,
        initial_cash,
        bars,
    )


# -- policies ------------------------------------------------------------------------------------


def nearest_action(actions: Sequence[float], exposure: float) -> int:
    return int(np.argmin(np.abs(np.asarray(actions) - exposure)))


def agent_policy(model: ActorCritic, greedy: bool = True, seed: int = 0) -> Policy:
    """The A3C policy, its LSTM state carried across steps (greedy by default)."""
    state: dict[str, Any] = {}
    generator = torch.Generator().manual_seed(seed)

    def act(env: VecTradingEnv, obs: NDArray[np.float32]) -> NDArray[np.int64]:
        if "h" not in state:
            state["h"], state["c"] = model.initial_state(env.n)
        with torch.no_grad():
            logits, _, state["h"], state["c"] = model.logits(torch.from_numpy(obs), state["h"], state["c"])
        if greedy:
            return logits.argmax(dim=1).numpy().astype(np.int64)
        return torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).squeeze(1).numpy().astype(np.int64)

    return act


def baseline_policy(name: str, raw_features: NDArray[np.float32], actions: Sequence[float], seed: int = 0) -> Policy:
    full, flat = nearest_action(actions, 1.0), nearest_action(actions, 0.0)
    ma = raw_features[:, FEATURE_NAMES.index("ma_ratio_5_20")]
    rsi = raw_features[:, FEATURE_NAMES.index("rsi_cutler_14")]
    rng = np.random.default_rng(seed)
    held: dict[str, NDArray[np.int64]] = {}

    def buy_and_hold(env: VecTradingEnv, obs: NDArray[np.float32]) -> NDArray[np.int64]:
        return np.full(env.n, full, dtype=np.int64)

    def ma_crossover(env: VecTradingEnv, obs: NDArray[np.float32]) -> NDArray[np.int64]:
        return np.where(ma[env.cursor] > 0, full, flat).astype(np.int64)

    def rsi_rule(env: VecTradingEnv, obs: NDArray[np.float32]) -> NDArray[np.int64]:
        prev = held.get("a", np.full(env.n, flat, dtype=np.int64))
        r = rsi[env.cursor]
        now = np.where(r < 0.30, full, np.where(r > 0.70, flat, prev)).astype(np.int64)
        held["a"] = now
        return now

    def random(env: VecTradingEnv, obs: NDArray[np.float32]) -> NDArray[np.int64]:
        return rng.integers(0, len(actions), size=env.n).astype(np.int64)

    table: dict[str, Policy] = {
        "buy_and_hold": buy_and_hold,
        "ma_crossover": ma_crossover,
        "rsi_rule": rsi_rule,
        "random": random,
    }
    return table[name]


# -- metrics -------------------------------------------------------------------------------------


def basket(bt: Backtest) -> tuple[NDArray[Any], NDArray[np.float64]]:
    """Dates and value of the equal-weight basket (each symbol's book carried forward once done)."""
    dates = np.unique(bt.days[bt.active])
    values = np.zeros((len(dates), bt.value.shape[1]))
    for j in range(bt.value.shape[1]):
        mask = bt.active[:, j]
        pos = np.searchsorted(dates, bt.days[mask, j])
        col = np.full(len(dates), np.nan)
        col[pos] = bt.value[mask, j]
        # before its first bar a book is cash; after its last it keeps its final value
        first = np.argmax(~np.isnan(col)) if (~np.isnan(col)).any() else len(col)
        col[:first] = bt.initial_cash
        for i in range(1, len(col)):
            if np.isnan(col[i]):
                col[i] = col[i - 1]
        values[:, j] = col
    return dates, values.sum(axis=1)


def _sharpe(r: NDArray[np.float64]) -> float:
    sd = float(np.std(r))
    return float(np.mean(r) / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else 0.0


def metrics(bt: Backtest) -> dict[str, Any]:
    _, value = basket(bt)
    start_value = bt.initial_cash * bt.value.shape[1]
    v = np.concatenate([[start_value], value])
    r = np.diff(np.log(v))
    years = max(len(r) / TRADING_DAYS, 1e-9)
    total = float(v[-1] / v[0] - 1)
    annual = float((v[-1] / v[0]) ** (1 / years) - 1)
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    drawdown = float(np.max(1 - v / np.maximum.accumulate(v)))
    mean_value = float(np.mean(v))
    pos = bt.position[bt.active]
    held_returns = bt.log_return[bt.active & (bt.position > 0)]
    out: dict[str, Any] = {
        "total_return": total,
        "annual_return": annual,
        "annual_vol": float(np.std(r) * math.sqrt(TRADING_DAYS)),
        "sharpe": _sharpe(r),
        "sortino": float(np.mean(r) / downside * math.sqrt(TRADING_DAYS)) if downside > 0 else 0.0,
        "max_drawdown": drawdown,
        "calmar": annual / drawdown if drawdown > 0 else 0.0,
        "turnover": float(bt.traded[bt.active].sum() / mean_value / years),
        "cost_drag": float(bt.costs[bt.active].sum() / mean_value / years),
        "exposure": float(pos.mean()) if len(pos) else 0.0,
        "hit_rate": float((held_returns > 0).mean()) if len(held_returns) else 0.0,
        "days": len(r),
        "bars": bt.bars,
    }
    regimes: dict[str, dict[str, float]] = {}
    for k in np.unique(bt.regime[bt.active]):
        sel = bt.active & (bt.regime == k)
        rr = bt.log_return[sel]
        regimes[str(int(k))] = {
            "bars": int(sel.sum()),
            "mean_daily_return": float(rr.mean()),
            "sharpe": _sharpe(rr),
            "exposure": float(bt.position[sel].mean()),
        }
    out["per_regime"] = regimes
    return out


SCALAR_METRICS = (
    "total_return",
    "annual_return",
    "annual_vol",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "turnover",
    "cost_drag",
    "exposure",
    "hit_rate",
)


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean ± std (population) of each scalar metric over seeds."""
    out: dict[str, dict[str, float]] = {}
    for key in SCALAR_METRICS:
        values = np.array([r[key] for r in runs], dtype=np.float64)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
