"""A training job from data to registered artifacts: folds × seeds, agent and baselines.

Runs in its own process (``jobs.py``); reports progress through a callback and honours a
stop request between and during A3C runs.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_trainer.a3c import ActorCritic, EnvSpec, train_a3c
from model_trainer.config import TrainingConfig
from model_trainer.data import SymbolBars, data_hash
from model_trainer.evaluation import (
    BASELINES,
    agent_policy,
    aggregate,
    baseline_policy,
    metrics,
    run_backtest,
)
from model_trainer.export import export_policy
from model_trainer.features import FEATURE_NAMES, FEATURE_SET
from model_trainer.pipeline import Fold, prepare_fold, walk_forward_splits

ProgressCallback = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """The job was asked to stop."""


@dataclass
class ModelArtifact:
    model_id: uuid.UUID
    version: str
    seed: int
    path: Path
    manifest: dict[str, Any]


@dataclass
class JobOutcome:
    models: list[ModelArtifact]
    report: dict[str, Any]


def code_version() -> str:
    """The git commit of the running code (``+dirty`` when the tree has changes), else the package version."""
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(  # noqa: S603 — fixed argv, no user input
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603
            ["git", "-C", str(root), "status", "--porcelain", "--", "model-trainer"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{sha}+dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"tradebot-model-trainer=={version('tradebot-model-trainer')}"


def _tagged(progress: ProgressCallback, fold: int, seed_index: int, seed: int) -> Callable[[dict[str, float]], None]:
    def report(point: dict[str, float]) -> None:
        progress({**point, "fold": fold, "seed_index": seed_index, "seed": seed})

    return report


def obs_dim(fold: Fold, config: TrainingConfig) -> int:
    return int(config.window * fold.market.window_features.shape[1] + fold.market.static.shape[1] + 1)


def _backtest_kwargs(fold: Fold, config: TrainingConfig) -> dict[str, Any]:
    return {
        "window": config.window,
        "actions": config.actions,
        "initial_cash": config.initial_cash,
        "rebalance_band": config.rebalance_band,
        "regime_labels": fold.regime_labels,
    }


def evaluate_strategies(
    fold: Fold, config: TrainingConfig, agent: ActorCritic | None, seed: int, which: str
) -> dict[str, dict[str, Any]]:
    segments = fold.val_segments if which == "validation" else fold.test_segments
    kwargs = _backtest_kwargs(fold, config)
    out = {
        name: metrics(
            run_backtest(
                fold.market, segments, baseline_policy(name, fold.raw_features, config.actions, seed), **kwargs
            )
        )
        for name in BASELINES
    }
    if agent is not None:
        out["agent"] = metrics(run_backtest(fold.market, segments, agent_policy(agent), **kwargs))
    return out


def run_training(
    config: TrainingConfig,
    series: Sequence[SymbolBars],
    artifact_root: Path,
    *,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> JobOutcome:
    started = time.perf_counter()
    digest = data_hash(series)
    version_of_code = code_version()
    splits = walk_forward_splits(config)
    runs_total = len(splits) * len(config.seeds)
    steps_total = runs_total * config.a3c.total_steps
    done_steps = 0
    fold_reports: list[dict[str, Any]] = []
    per_seed: dict[int, dict[str, list[dict[str, Any]]]] = {s: {"validation": [], "test": []} for s in config.seeds}
    models: list[ModelArtifact] = []
    symbols = [s.symbol for s in series]

    def progress(extra: dict[str, Any]) -> None:
        if on_progress is None:
            return
        elapsed = time.perf_counter() - started
        steps = done_steps + int(extra.get("steps", 0))
        eta = elapsed / steps * (steps_total - steps) if steps else None
        on_progress({**extra, "steps": steps, "steps_total": steps_total, "elapsed": elapsed, "eta": eta})

    for fold_index, split in enumerate(splits):
        if should_stop():
            raise Cancelled
        fold = prepare_fold(series, config, split, fold_index, seed=config.seeds[0])
        fold_report: dict[str, Any] = {
            "index": fold_index,
            "split": json.loads(split.model_dump_json()),
            "train_bars": int(sum(b - a + 1 for a, b in fold.train_ranges)),
            "forecaster": vars(fold.forecast_report),
            "regimes": fold.regimes.to_dict(),
            "seeds": {},
        }
        spec = EnvSpec(
            fold.market,
            fold.train_ranges,
            config.window,
            config.actions,
            config.initial_cash,
            config.rebalance_band,
            config.risk_penalty,
        )
        kwargs = _backtest_kwargs(fold, config)

        def validate(model: ActorCritic, fold: Fold = fold, kwargs: dict[str, Any] = kwargs) -> float:
            return float(metrics(run_backtest(fold.market, fold.val_segments, agent_policy(model), **kwargs))["sharpe"])

        for seed_index, seed in enumerate(config.seeds):
            if should_stop():
                raise Cancelled
            result = train_a3c(
                spec,
                config.a3c,
                seed,
                validate=validate,
                on_progress=_tagged(progress, fold_index, seed_index, seed),
                should_stop=should_stop,
            )
            if should_stop():
                raise Cancelled
            done_steps += config.a3c.total_steps
            agent = ActorCritic(
                obs_dim(fold, config), len(config.actions), config.a3c.hidden_size, config.a3c.hidden_layers
            )
            agent.load_state_dict(result.state_dict)
            agent.eval()
            val = evaluate_strategies(fold, config, agent, seed, "validation")
            test = evaluate_strategies(fold, config, agent, seed, "test")
            per_seed[seed]["validation"].append(val)
            per_seed[seed]["test"].append(test)
            fold_report["seeds"][str(seed)] = {
                "steps": result.steps,
                "episodes": result.episodes,
                "seconds": result.seconds,
                "steps_per_second": result.steps / result.seconds if result.seconds else None,
                "best_val_sharpe": result.best_val_sharpe,
                "validation": val,
                "test": test,
            }
            if fold_index == len(splits) - 1:
                models.append(
                    write_artifact(
                        artifact_root,
                        fold,
                        agent,
                        config,
                        seed,
                        digest,
                        symbols,
                        version_of_code,
                        {
                            "validation": val,
                            "test": test,
                            "training": {"steps": result.steps, "seconds": result.seconds},
                        },
                    )
                )
        fold_reports.append(fold_report)

    summary: dict[str, dict[str, Any]] = {}
    for which in ("validation", "test"):
        summary[which] = {}
        for strategy in ("agent", *BASELINES):
            runs = []
            for seed in config.seeds:
                folds = per_seed[seed][which]
                runs.append(
                    {
                        k: float(np.mean([f[strategy][k] for f in folds]))
                        for k in folds[0][strategy]
                        if k != "per_regime"
                    }
                )
            summary[which][strategy] = aggregate(runs)
    report = {
        "data_hash": digest,
        "symbols": symbols,
        "seeds": config.seeds,
        "code_version": version_of_code,
        "embargo": config.effective_embargo,
        "folds": fold_reports,
        "summary": summary,
        "seconds": time.perf_counter() - started,
    }
    for m in models:
        (m.path / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return JobOutcome(models, report)


def write_artifact(
    root: Path,
    fold: Fold,
    agent: ActorCritic,
    config: TrainingConfig,
    seed: int,
    digest: str,
    symbols: list[str],
    version_of_code: str,
    model_metrics: dict[str, Any],
) -> ModelArtifact:
    """``<root>/<model_id>/`` with ``manifest.json``, ``policy.pt`` (TorchScript), ``checkpoint.pt``
    (state dicts to resume or inspect) and ``regimes.csv`` (regime per symbol and day)."""
    model_id = uuid.uuid4()
    created = datetime.now(UTC)
    version = f"{created:%Y%m%d%H%M%S}-s{seed}"
    path = (root / str(model_id)).resolve()
    path.mkdir(parents=True, exist_ok=False)
    export_policy(path / "policy.pt", fold.scaler, fold.regimes, fold.forecaster, agent)
    torch.save(
        {
            "agent": agent.state_dict(),
            "forecaster": fold.forecaster.state_dict(),
            "scaler": {"mean": fold.scaler.mean.tolist(), "std": fold.scaler.std.tolist()},
            "regimes": fold.regimes.to_dict(),
        },
        path / "checkpoint.pt",
    )
    m = fold.market
    lines = ["symbol,date,regime," + ",".join(f"p{k}" for k in range(fold.regimes.k))]
    for s, symbol in enumerate(m.symbols):
        lo = int(m.first_valid[s])
        for i in range(lo, int(m.offsets[s + 1])):
            probs = ",".join(f"{p:.4f}" for p in m.static[i, : fold.regimes.k])
            lines.append(f"{symbol},{m.days[i]},{fold.regime_labels[i]},{probs}")
    (path / "regimes.csv").write_text("\n".join(lines) + "\n")
    ranges = {
        "train": [str(fold.split.train_start or ""), str(fold.split.train_end)],
        "validation": [str(fold.split.val_start), str(fold.split.val_end)],
        "test": [str(fold.split.test_start), str(fold.split.test_end)],
    }
    manifest = {
        "model_id": str(model_id),
        "version": version,
        "created_at": created.isoformat(),
        "feature_set": FEATURE_SET,
        "feature_names": list(FEATURE_NAMES),
        "timeframe": config.source.timeframe,
        "window": config.window,
        "actions": list(config.actions),
        "hidden_layers": config.a3c.hidden_layers,
        "hidden_size": config.a3c.hidden_size,
        "data_hash": digest,
        "seed": seed,
        "config": json.loads(config.model_dump_json()),
        "code_version": version_of_code,
        "metrics": model_metrics,
        "symbols": symbols,
        "ranges": ranges,
        "regimes": fold.regimes.k,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    return ModelArtifact(model_id, version, seed, path, manifest)
