"""Features in, decisions out: windows over a symbol's bars, recurrent state, hot-swapped models.

A decision is a function of stored data, not of which replica computed it or what it saw before:
- its feature window is the symbol's last ``window`` bars, read from the ``features`` table
  (and this process's recent messages, for bars not stored yet);
- its recurrent (LSTM) state continues from the previous decision of the same model on the
  symbol, stored with that decision. Where there is none — a new model, a new KST day for an
  intraday model, a gap — the state is rebuilt by stepping the model from zero over the bars
  before it: every bar of the day for an intraday model, the last ``burn_in`` bars for a daily
  one. Stepping that way gives the same state as having decided every one of those bars.

The engine does the arithmetic and holds what is in memory: the served ``ModelSlot`` (a model
swapped in whole; a request finishes on the slot it started with) and recent rows per symbol.
Reading and writing the database is the service's. Forward passes run in a thread pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import structlog
import torch

from common.clock import to_kst
from common.contracts import FeaturesV1

from .model import LoadedModel, Prediction

log = structlog.get_logger(__name__)

DECISION_NAMESPACE = uuid.UUID("6f1c5a52-2b1e-4d07-9a8f-3c1d2e4b5a60")
Row = dict[str, float | None]
Bar = tuple[datetime, Row]
WindowKey = tuple[str, str, str]  # symbol, timeframe, feature set


@dataclass(frozen=True)
class Recurrent:
    """A symbol's recurrent state after the bar at ``ts`` (and the exposure decided there)."""

    ts: datetime
    h: torch.Tensor
    c: torch.Tensor
    position: float


@dataclass(frozen=True)
class ModelSlot:
    model: LoadedModel


@dataclass(frozen=True)
class Decision:
    id: uuid.UUID
    symbol: str
    timeframe: str
    feature_ts: datetime
    feature_set: str
    close: int
    model_id: str
    model_version: str
    prediction: Prediction
    state: Recurrent
    steps: int  # forward passes this decision took (1 when it continued the previous decision's state)


def decision_id(model_version: str, symbol: str, timeframe: str, ts: datetime) -> uuid.UUID:
    """Deterministic: the same features under the same model always give the same decision id."""
    return uuid.uuid5(DECISION_NAMESPACE, f"{model_version}|{symbol}|{timeframe}|{ts.isoformat()}")


def encode_state(h: torch.Tensor, c: torch.Tensor) -> bytes:
    """h then c as little-endian float32 (what ``decisions.state`` stores)."""
    return np.concatenate([h.numpy().ravel(), c.numpy().ravel()]).astype("<f4").tobytes()


def decode_state(model: LoadedModel, blob: bytes) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The stored state, or None when it does not fit this model's LSTM shape."""
    h0, _ = model.zero_state()
    values = np.frombuffer(blob, dtype="<f4")
    if values.size != 2 * h0.numel():
        return None
    h = torch.from_numpy(values[: h0.numel()].copy()).reshape(h0.shape)
    c = torch.from_numpy(values[h0.numel() :].copy()).reshape(h0.shape)
    return h, c


def same_session(model: LoadedModel, a: datetime, b: datetime) -> bool:
    """Whether state may carry from ``a`` to ``b``: always for daily models, within a KST day otherwise."""
    return model.manifest.timeframe == "1d" or to_kst(a).date() == to_kst(b).date()


class InferenceEngine:
    def __init__(self, executor: Executor, *, burn_in: int, memory_bars: int) -> None:
        self._executor = executor
        self.burn_in = burn_in
        self._memory_bars = memory_bars
        self.slot: ModelSlot | None = None
        self._recent: dict[WindowKey, deque[Bar]] = {}

    @property
    def model(self) -> LoadedModel | None:
        return self.slot.model if self.slot else None

    def swap(self, model: LoadedModel) -> None:
        """Serve ``model`` from now on; requests in flight finish on the old one."""
        previous = self.slot.model.version if self.slot else None
        self.slot = ModelSlot(model)
        log.info("inferencer.model_swapped", previous=previous, version=model.version)

    # --- rows held in memory --------------------------------------------------------------------

    def remember(self, features: FeaturesV1) -> None:
        """Keep a bar's features (of any set) for windows, until they can be read back from the database."""
        key = (features.symbol, features.timeframe, features.feature_set)
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque(maxlen=self._memory_bars)
        if recent and features.ts <= recent[-1][0]:
            # Out of order (a backfill, a redelivery): keep the rows sorted, replace a repeated one.
            rows = {ts: row for ts, row in recent}
            rows[features.ts] = dict(features.values)
            recent.clear()
            recent.extend(sorted(rows.items())[-self._memory_bars :])
        else:
            recent.append((features.ts, dict(features.values)))

    def recent(self, key: WindowKey, before: datetime) -> list[Bar]:
        return [bar for bar in self._recent.get(key, ()) if bar[0] < before]

    # --- deciding -------------------------------------------------------------------------------

    def plan(
        self, model: LoadedModel, prior: Recurrent | None, history: Sequence[Bar], current: Bar
    ) -> tuple[Recurrent | None, list[int]]:
        """From which state, through which bars (indices into ``history + [current]``), to decide ``current``.

        ``prior`` is continued when its bar is in ``history`` with a full window after it (and,
        intraday, on the same day); otherwise the state is rebuilt from zero over the session.
        """
        bars = [*history, current]
        last = len(bars) - 1
        window = model.manifest.window
        if prior is not None and same_session(model, prior.ts, current[0]):
            known = next((i for i, (ts, _) in enumerate(bars) if ts == prior.ts), None)
            if known is not None and known < last and known + 1 >= window - 1:
                return prior, list(range(known + 1, len(bars)))
        first = window - 1
        if model.manifest.timeframe == "1d":
            first = max(first, last - self.burn_in)
        else:
            day = to_kst(current[0]).date()
            while first < last and to_kst(bars[first][0]).date() != day:
                first += 1
        return None, list(range(first, len(bars)))

    async def decide(
        self, slot: ModelSlot, features: FeaturesV1, prior: Recurrent | None, history: Sequence[Bar]
    ) -> Decision | None:
        """The decision on ``features`` given the stored bars before it, or None (window not full yet)."""
        model = slot.model
        manifest = model.manifest
        if len(history) + 1 < manifest.window:
            return None
        current: Bar = (features.ts, dict(features.values))
        start, steps = self.plan(model, prior, history, current)
        bars = [*history, current]
        loop = asyncio.get_running_loop()
        prediction, state = await loop.run_in_executor(self._executor, self._step, model, bars, start, steps)
        return Decision(
            id=decision_id(manifest.version, features.symbol, features.timeframe, features.ts),
            symbol=features.symbol,
            timeframe=features.timeframe,
            feature_ts=features.ts,
            feature_set=features.feature_set,
            close=features.close,
            model_id=manifest.model_id,
            model_version=manifest.version,
            prediction=prediction,
            state=state,
            steps=len(steps),
        )

    @staticmethod
    def _step(
        model: LoadedModel, bars: Sequence[Bar], start: Recurrent | None, steps: Sequence[int]
    ) -> tuple[Prediction, Recurrent]:
        """Forward passes over ``steps`` (blocking); each step's exposure is the next step's position."""
        window = model.manifest.window
        if start is None:
            h, c = model.zero_state()
            position = 0.0
        else:
            h, c, position = start.h, start.c, start.position
        prediction: Prediction | None = None
        for index in steps:
            rows = [row for _, row in bars[index - window + 1 : index + 1]]
            prediction, h, c = model.forward(rows, position, h, c)
            position = prediction.target_exposure
        assert prediction is not None, "a decision takes at least one step"
        return prediction, Recurrent(ts=bars[-1][0], h=h, c=c, position=position)

    async def predict(
        self, slot: ModelSlot, rows: Sequence[Row], position: float, state: Recurrent | None
    ) -> Prediction:
        """One forward pass without side effects: ``rows`` (the window), from ``state`` or zero state."""
        model = slot.model
        h, c = (state.h, state.c) if state is not None else model.zero_state()
        loop = asyncio.get_running_loop()
        prediction, _, _ = await loop.run_in_executor(self._executor, model.forward, list(rows), position, h, c)
        return prediction
