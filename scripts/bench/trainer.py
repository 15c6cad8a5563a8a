"""Benchmark and acceptance run of the model-trainer, on the real KRX daily bars.

1. A training job through the API (in-process app, SQLite, the job in its own process with
   A3C worker processes) on ``../shared/data/krx-daily``: train to 2012, validate 2013–2014,
   test 2015–2018, 5 seeds (``--quick``: one seed, fewer steps); the report's agent and baselines
   side by side, after costs.
2. Training throughput: env steps/s of our A3C-LSTM vs stable-baselines3 A2C (MLP, 4 envs) on
   the same environment, data and cores, measured in the same run.
3. Backtest throughput of the trained policy: bars/s across symbols (many windows at once).

Run through ``scripts/bench.sh`` (section model-trainer) or directly:
``.venv/bin/python scripts/bench/trainer.py [--quick]``. Writes the ``## model-trainer``
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import benchlib
import httpx
import numpy as np
import torch
from benchlib import Figure

from common.clock import SystemClock
from common.db import migrate
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from model_trainer.a3c import ActorCritic, EnvSpec, train_a3c
from model_trainer.app import create_app
from model_trainer.config import A3CParams, TrainingConfig
from model_trainer.data import load_csv_dir
from model_trainer.evaluation import agent_policy, run_backtest
from model_trainer.pipeline import prepare_fold
from model_trainer.settings import ModelTrainerSettings

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "krx-daily"
SECTION = "model-trainer"


def job_config(quick: bool) -> dict[str, Any]:
    return {
        "source": {"kind": "csv", "path": str(DATA)},
        "split": {
            "train_end": "2012-12-31",
            "val_start": "2013-01-01",
            "val_end": "2014-12-31",
            "test_start": "2015-01-01",
            "test_end": "2018-12-31",
        },
        "window": 20,
        "forecaster": {"epochs": 2, "max_samples": 8000},
        "a3c": {
            "workers": 2,
            "envs_per_worker": 16,
            "n_steps": 20,
            "total_steps": 5_000 if quick else 30_000,
            "eval_every_steps": 2_500 if quick else 10_000,
            "hidden_size": 64,
        },
        # --quick keeps the whole bench.sh under three minutes: one seed is the acceptance path, not a result.
        "seeds": [0] if quick else [0, 1, 2, 3, 4],
    }


async def api_job(quick: bool, workdir: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await migrate(url)
    settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=url, migrate_on_start=False)
    runtime = Runtime.from_settings(settings, clock=SystemClock())
    service_settings = ModelTrainerSettings(artifact_root=workdir / "models", data_dirs=[DATA.parent])
    async with runtime:
        app = create_app(runtime, service_settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mt", timeout=30) as client:
                started = time.perf_counter()
                job_id = (await client.post("/model/train", json=job_config(quick))).json()["job_id"]
                while True:
                    await asyncio.sleep(2)
                    status = (await client.get(f"/model/status/{job_id}")).json()
                    if status["status"] in ("succeeded", "failed", "cancelled"):
                        break
                seconds = time.perf_counter() - started
                if status["status"] != "succeeded":
                    raise SystemExit(f"training job {status['status']}: {status['error']}")
                models = (await client.get("/model/models")).json()
                promote = await client.post(f"/model/models/{models[-1]['id']}/promote")
                if models[-1]["status"] != "promoted" and promote.status_code != 200:
                    raise SystemExit(f"promotion failed: {promote.text}")
                return status, models, seconds


def throughput(quick: bool, checkpoint: Path) -> dict[str, float]:
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.vec_env import VecEnv

    config = TrainingConfig.model_validate(job_config(quick))
    series = load_csv_dir(DATA)
    fold = prepare_fold(series, config, config.split)
    spec = EnvSpec(
        fold.market, fold.train_ranges, config.window, config.actions, config.initial_cash, config.rebalance_band, 0.0
    )
    # Our figure includes spawning the worker processes: too few steps and that fixed cost dominates.
    steps = 40_000 if quick else 60_000

    params = A3CParams(**{**config.a3c.model_dump(), "total_steps": steps, "eval_every_steps": 10**9})
    ours = train_a3c(spec, params, seed=0)
    ours_rate = ours.steps / ours.seconds

    class TradingVecEnv(VecEnv):
        """SB3's view of the same vectorised environment (4 envs)."""

        def __init__(self) -> None:
            self.env = spec.make(4, config.a3c.episode_length, 0)
            space = gym.spaces.Box(-np.inf, np.inf, (self.env.obs_dim,), np.float32)
            super().__init__(4, space, gym.spaces.Discrete(len(config.actions)))
            self._actions = np.zeros(4, dtype=np.int64)

        def reset(self) -> Any:
            return self.env.reset()

        def step_async(self, actions: Any) -> None:
            self._actions = np.asarray(actions)

        def step_wait(self) -> Any:
            obs, reward, done, _ = self.env.step(self._actions)
            infos = [{"terminal_observation": obs[i]} if done[i] else {} for i in range(4)]
            return obs, reward, done, infos

        def close(self) -> None:
            return None

        def get_attr(self, name: str, indices: Any = None) -> list[Any]:
            return [getattr(self.env, name)] * 4

        def set_attr(self, name: str, value: Any, indices: Any = None) -> None:
            setattr(self.env, name, value)

        def env_method(self, *args: Any, **kwargs: Any) -> list[Any]:
            return [None] * 4

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False] * 4

    torch.set_num_threads(2)  # the same two cores the A3C workers use
    model = A2C("MlpPolicy", TradingVecEnv(), seed=0, device="cpu", verbose=0)
    started = time.perf_counter()
    model.learn(total_timesteps=steps)
    sb3_rate = steps / (time.perf_counter() - started)

    state = torch.load(checkpoint / "checkpoint.pt", weights_only=True)["agent"]
    agent = ActorCritic(spec.make(1, 8, 0).obs_dim, len(config.actions), config.a3c.hidden_size)
    agent.load_state_dict(state)
    agent.eval()
    torch.set_num_threads(1)
    chunk = 250
    segments = []
    m = fold.market
    for k in range(len(m.symbols)):
        lo, hi = int(m.first_valid[k]), int(m.offsets[k + 1]) - 1
        segments += [(a, min(a + chunk, hi)) for a in range(lo, hi - 1, chunk)]
    started = time.perf_counter()
    bt = run_backtest(
        m,
        segments,
        agent_policy(agent),
        window=config.window,
        actions=config.actions,
        initial_cash=config.initial_cash,
        rebalance_band=config.rebalance_band,
    )
    bt_seconds = time.perf_counter() - started
    return {
        "ours": ours_rate,
        "ours_steps": float(ours.steps),
        "sb3": sb3_rate,
        "steps": float(steps),
        "bars_per_s": bt.bars / bt_seconds,
        "bars": float(bt.bars),
        "windows": float(len(segments)),
    }


def fmt(stat: dict[str, float], pct: bool = False, signed: bool = True) -> str:
    if pct:
        sign = "+" if signed else ""
        return f"{stat['mean'] * 100:{sign}.1f}% ± {stat['std'] * 100:.1f}"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def report_lines(status: dict[str, Any], seconds: float, rates: dict[str, float]) -> list[str]:
    summary = status["summary"]
    seeds = len(status["config"]["seeds"])
    lines = [
        f"- acceptance job through the API (`POST /model/train`, 8 symbols, train ≤2012, validate 2013–14,"
        f" test 2015–18, {seeds} seed{'s' if seeds > 1 else ''} × {status['config']['a3c']['total_steps']:,} A3C"
        " steps, 2 workers):"
        f" **{seconds:.0f} s** to registered models; explicit promotion answered 200",
        "",
        "  Test 2015–2018, equal-weight basket of the 8 symbols, after commission, slippage and sell tax"
        f" (mean ± std over {seeds} seed{'s' if seeds > 1 else ''}; baselines other than random are deterministic):",
        "",
        "  | strategy | total return | annual return | Sharpe | Sortino | max DD | turnover/yr | cost drag/yr"
        " | exposure |",
        "  |---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("agent", "buy_and_hold", "ma_crossover", "rsi_rule", "random"):
        s = summary["test"][name]
        lines.append(
            f"  | {name} | {fmt(s['total_return'], True)} | {fmt(s['annual_return'], True)} | {fmt(s['sharpe'])}"
            f" | {fmt(s['sortino'])} | {fmt(s['max_drawdown'], True, False)} | {fmt(s['turnover'])}"
            f" | {fmt(s['cost_drag'], True, False)} | {fmt(s['exposure'])} |"
        )
    val = summary["validation"]
    agent, hold = summary["test"]["agent"], summary["test"]["buy_and_hold"]
    lines += [
        "",
        f"  Reading: on test the agent's Sharpe is {agent['sharpe']['mean'] - hold['sharpe']['mean']:+.2f}"
        " vs buy & hold"
        f" and its return {100 * (agent['annual_return']['mean'] - hold['annual_return']['mean']):+.1f} pp/yr,"
        f" at {agent['exposure']['mean']:.0%} average exposure and"
        f" {100 * (agent['max_drawdown']['mean'] - hold['max_drawdown']['mean']):+.1f} pp max drawdown. Seeds vary the"
        " A3C run only (scaler, regimes and forecaster are fit once per fold); each seed's model is the checkpoint"
        " with the best validation Sharpe.",
        "",
        f"  Validation 2013–14 Sharpe: agent {fmt(val['agent']['sharpe'])}, buy & hold"
        f" {fmt(val['buy_and_hold']['sharpe'])}.",
        f"- training throughput, same env/data/2 cores: our A3C-LSTM (2 workers × 16 envs)"
        f" **{rates['ours']:,.0f} env-steps/s** vs SB3 A2C (MLP, 4 envs) **{rates['sb3']:,.0f} env-steps/s**"
        f" → **{rates['ours'] / rates['sb3']:.2f}×** (goal ≥ 1.0×; {rates['steps']:,.0f} steps each,"
        f" our figure includes spawning the worker processes)",
        f"- backtest of the trained policy: **{rates['bars_per_s']:,.0f} bars/s** ({rates['bars']:,.0f} bars,"
        f" {rates['windows']:.0f} windows of ≤250 bars over the 8 symbols' full history, stepped at once;"
        f" goal ≥ 100,000)",
    ]
    return lines


def figures(rates: dict[str, float], command: str) -> list[Figure]:
    ratio = rates["ours"] / rates["sb3"]
    return [
        Figure(
            "A3C-LSTM training env-steps/s",
            f"{rates['ours']:,.0f} env-steps/s",
            f"SB3 A2C {rates['sb3']:,.0f} env-steps/s",
            f"{ratio:.2f}×",
            "≥ 1.0× of SB3 A2C",
            ratio >= 1.0,
            command,
        ),
        Figure(
            "policy backtest bars/s",
            f"{rates['bars_per_s']:,.0f} bars/s",
            "—",
            "—",
            "≥ 100,000 bars/s",
            rates["bars_per_s"] >= 100_000,
            command,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--command", default="scripts/bench/trainer.py")
    args, _ = parser.parse_known_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found")
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        status, models, seconds = asyncio.run(api_job(args.quick, Path(tmp)))
        rates = throughput(args.quick, Path(urlparse(models[0]["artifact_uri"]).path))
    lines = report_lines(status, seconds, rates)
    for line in lines:
        print(line)
    benchlib.write_section(SECTION, args.command, lines)
    benchlib.update_summary(figures(rates, args.command))


if __name__ == "__main__":
    main()
