"""Features in, decisions out: rolling windows, recurrent state per symbol, hot-swapped models.

A ``ModelSlot`` is a loaded model *and* the LSTM state that belongs to it. A swap installs a new
slot; a request captures the slot it started with and finishes on it, so nothing ever mixes one
model's state with another's — and the new model starts from zero state. Recurrent state is also
reset when an intraday model sees a new KST trading day. Forward passes run in a thread pool.

Features of one symbol are processed in order (a lock per symbol and timeframe); a message at
or before the last timestamp seen (a redelivery) is ignored, so state never advances twice.
The data-processor publishes several feature sets for the same bar; windows are kept per set,
and only the served model's ``feature_set`` ever reaches it (other sets would give it zeros).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import date, datetime

import structlog
import torch

from common.clock import to_kst
from common.contracts import FeaturesV1

from .model import LoadedModel, Prediction

log = structlog.get_logger(__name__)

DECISION_NAMESPACE = uuid.UUID("6f1c5a52-2b1e-4d07-9a8f-3c1d2e4b5a60")
Row = dict[str, float | None]
WindowKey = tuple[str, str, str]  # symbol, timeframe, feature set


@dataclass
class SymbolState:
    h: torch.Tensor
    c: torch.Tensor
    day: date | None = None
    steps: int = 0
    position: float = 0.0  # the exposure last decided: the policy's position input


@dataclass(eq=False)
class ModelSlot:
    model: LoadedModel
    states: dict[str, SymbolState] = field(default_factory=dict)

    def state(self, symbol: str) -> SymbolState:
        state = self.states.get(symbol)
        if state is None:
            h, c = self.model.zero_state()
            state = self.states[symbol] = SymbolState(h=h, c=c)
        return state


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
    steps: int  # forward passes on this symbol's state since its last reset, this one included


def decision_id(model_version: str, symbol: str, timeframe: str, ts: datetime) -> uuid.UUID:
    """Deterministic: the same features under the same model always give the same decision id."""
    return uuid.uuid5(DECISION_NAMESPACE, f"{model_version}|{symbol}|{timeframe}|{ts.isoformat()}")


class InferenceEngine:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self.slot: ModelSlot | None = None
        self._windows: dict[WindowKey, deque[Row]] = {}
        self._last_ts: dict[WindowKey, datetime] = {}
        self._locks: dict[WindowKey, asyncio.Lock] = {}

    @property
    def model(self) -> LoadedModel | None:
        return self.slot.model if self.slot else None

    def swap(self, model: LoadedModel) -> None:
        """Serve ``model`` from now on, with fresh recurrent state; requests in flight finish on the old one."""
        previous = self.slot.model.version if self.slot else None
        self.slot = ModelSlot(model)
        for key, rows in list(self._windows.items()):
            if rows.maxlen is None or rows.maxlen < model.manifest.window:
                self._windows[key] = deque(rows, maxlen=model.manifest.window)
        log.info("inferencer.model_swapped", previous=previous, version=model.version)

    def _window(self, key: WindowKey) -> deque[Row]:
        rows = self._windows.get(key)
        if rows is None:
            size = self.slot.model.manifest.window if self.slot else 1
            rows = self._windows[key] = deque(maxlen=max(size, 1))
        return rows

    async def _run(
        self, slot: ModelSlot, rows: list[Row], position: float, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[Prediction, torch.Tensor, torch.Tensor]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, slot.model.forward, rows, position, h, c)

    async def on_features(self, features: FeaturesV1) -> Decision | None:
        """Add a bar's features; the decision when a model is loaded and its window is full.

        Features of a set other than the served model's are ignored (kept per set while no model is loaded).
        """
        key = (features.symbol, features.timeframe, features.feature_set)
        served = self.slot
        if served is not None and features.feature_set != served.model.manifest.feature_set:
            return None
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            last = self._last_ts.get(key)
            if last is not None and features.ts <= last:
                log.info("inferencer.stale_features_skipped", symbol=features.symbol, ts=features.ts.isoformat())
                return None
            self._last_ts[key] = features.ts
            rows = self._window(key)
            rows.append(dict(features.values))
            slot = self.slot
            if (
                slot is None
                or features.timeframe != slot.model.manifest.timeframe
                or features.feature_set != slot.model.manifest.feature_set
            ):
                return None
            manifest = slot.model.manifest
            if len(rows) < manifest.window:
                return None
            state = slot.state(features.symbol)
            day = to_kst(features.ts).date()
            if manifest.timeframe != "1d" and state.day is not None and state.day != day:
                # A new session: yesterday's intraday memory must not leak into today.
                state.h, state.c = slot.model.zero_state()
                state.steps = 0
            prediction, h, c = await self._run(slot, list(rows)[-manifest.window :], state.position, state.h, state.c)
            state.h, state.c, state.day = h, c, day
            state.steps += 1
            state.position = prediction.target_exposure
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
                steps=state.steps,
            )

    async def predict(
        self, symbol: str, timeframe: str, rows: list[Row] | None, position: float | None
    ) -> tuple[LoadedModel, Prediction, bool] | None:
        """A prediction without side effects: on given rows (zero state) or on the symbol's latest window.

        Returns ``(model, prediction, used_latest)``; None when there is no model or not enough rows.
        """
        slot = self.slot
        if slot is None:
            return None
        manifest = slot.model.manifest
        if rows is not None:
            if len(rows) < manifest.window:
                return None
            h, c = slot.model.zero_state()
            prediction, _, _ = await self._run(slot, rows, position or 0.0, h, c)
            return slot.model, prediction, False
        window = list(self._windows.get((symbol, timeframe, manifest.feature_set), ()))
        if len(window) < manifest.window:
            return None
        state = slot.state(symbol)
        used_position = state.position if position is None else position
        prediction, _, _ = await self._run(slot, window[-manifest.window :], used_position, state.h, state.c)
        return slot.model, prediction, True
