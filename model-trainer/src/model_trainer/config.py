"""A training job's parameters: data, split, environment, costs, models, A3C, seeds.

The whole object is stored with the job and with every model it registers.
"""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model_trainer.features import LOOKBACK


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(Strict):
    """``csv``: a folder of ``<symbol>.csv`` daily bars (must sit under an allowed data dir);
    ``db``: the ``bars`` table of the service's database."""

    kind: Literal["csv", "db"] = "db"
    path: str | None = None
    symbols: list[str] | None = Field(default=None, min_length=1, max_length=200)
    timeframe: Literal["1d", "1m"] = "1d"

    @field_validator("symbols")
    @classmethod
    def _six_digits(cls, value: list[str] | None) -> list[str] | None:
        for s in value or []:
            if not (len(s) == 6 and s.isdigit()):
                raise ValueError(f"symbol {s!r} is not a 6-digit KRX code")
        return value

    @model_validator(mode="after")
    def _path_for_csv(self) -> Self:
        if self.kind == "csv" and not self.path:
            raise ValueError("a csv source needs a path")
        if self.kind == "csv" and self.timeframe != "1d":
            raise ValueError("csv sources hold daily bars only")
        return self


class Split(Strict):
    """Train up to ``train_end``; validate and test on the later ranges (inclusive dates)."""

    train_start: date | None = None
    train_end: date
    val_start: date
    val_end: date
    test_start: date
    test_end: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.train_end < self.val_start <= self.val_end < self.test_start <= self.test_end):
            raise ValueError("need train_end < val_start <= val_end < test_start <= test_end")
        if self.train_start is not None and self.train_start >= self.train_end:
            raise ValueError("train_start must come before train_end")
        return self


class Costs(Strict):
    commission_rate: float = Field(default=0.00015, ge=0, le=0.01)
    slippage_ticks: int = Field(default=1, ge=1, le=50)
    sell_tax_schedule: list[tuple[date, float]] | None = Field(
        default=None, description="[(effective date, rate)...]; default: the KRX KOSPI schedule"
    )
    price_limits: bool = True
    legacy_limit_rate: float = Field(default=0.15, gt=0, le=1, description="daily limit before 1998-12-07")


class RegimeParams(Strict):
    method: Literal["gmm", "kmeans"] = "gmm"
    k: int = Field(default=3, ge=2, le=8)


class ForecasterParams(Strict):
    hidden: int = Field(default=16, ge=2, le=256)
    horizon: int = Field(default=5, ge=1, le=60)
    epochs: int = Field(default=2, ge=1, le=50)
    max_samples: int = Field(default=8_000, ge=100, le=1_000_000)


class A3CParams(Strict):
    workers: int = Field(default=2, ge=1, le=32)
    envs_per_worker: int = Field(default=8, ge=1, le=256)
    lr: float = Field(default=1e-3, gt=0, le=1)
    n_steps: int = Field(default=20, ge=1, le=1000)
    entropy: float = Field(default=0.01, ge=0, le=1)
    gamma: float = Field(default=0.99, gt=0, le=1)
    value_coef: float = Field(default=0.5, ge=0, le=10)
    max_grad_norm: float = Field(default=0.5, gt=0, le=100)
    hidden_size: int = Field(default=64, ge=4, le=1024)
    hidden_layers: int = Field(default=1, ge=1, le=4)
    total_steps: int = Field(default=40_000, ge=100, le=1_000_000_000)
    episode_length: int = Field(default=256, ge=8, le=100_000)
    eval_every_steps: int = Field(default=10_000, ge=100)
    start_method: Literal["spawn", "fork", "forkserver"] = "spawn"


class TrainingConfig(Strict):
    """Everything a training job needs; every field is a job parameter."""

    source: DataSource = DataSource()
    split: Split
    window: int = Field(default=20, ge=1, le=250)
    actions: list[float] = Field(default=[0.0, 0.25, 0.5, 0.75, 1.0], min_length=2, max_length=21)
    costs: Costs = Costs()
    initial_cash: int = Field(default=100_000_000, ge=100_000)
    rebalance_band: float = Field(default=0.05, ge=0, le=1)
    risk_penalty: float = Field(default=0.0, ge=0)
    regimes: RegimeParams = RegimeParams()
    forecaster: ForecasterParams = ForecasterParams()
    a3c: A3CParams = A3CParams()
    seeds: list[int] = Field(default=[0, 1, 2, 3, 4], min_length=1, max_length=20)
    embargo: int | None = Field(default=None, description="bars between training and validation data")
    walk_forward_folds: int = Field(default=1, ge=1, le=10)
    auto_promote: bool = True

    @field_validator("actions")
    @classmethod
    def _exposures(cls, value: list[float]) -> list[float]:
        if any(not 0.0 <= a <= 1.0 for a in value) or len(set(value)) != len(value):
            raise ValueError("actions are distinct long-only target exposures in [0, 1]")
        return sorted(value)

    @property
    def min_embargo(self) -> int:
        """At least the longest feature window, plus the forecaster's label horizon."""
        return max(LOOKBACK, self.window) + self.forecaster.horizon

    @property
    def effective_embargo(self) -> int:
        return self.embargo if self.embargo is not None else self.min_embargo

    @model_validator(mode="after")
    def _embargo_long_enough(self) -> Self:
        if self.embargo is not None and self.embargo < self.min_embargo:
            raise ValueError(f"embargo must be at least {self.min_embargo} bars (longest feature window + horizon)")
        return self
