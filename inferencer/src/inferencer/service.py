"""The inferencer's business logic: load and swap models, decide, store, send to the trader.

Decisions are stored (insert-or-ignore by their deterministic id) *before* they are sent, and
sent with the decision id as the idempotency key, so a retry or a redelivered message can never
trade twice. The trader call happens outside any database transaction: in all-in-one mode both
services share one SQLite file, and a transaction held across the call would block the trader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.contracts import FeaturesV1, ModelPromotedV1
from common.errors import TradebotError
from common.metrics import DECISION_SECONDS

from .engine import Decision, InferenceEngine
from .model import LoadedModel, load_model
from .repository import promoted_model, record_trade, store_decision
from .settings import InferencerSettings

log = structlog.get_logger(__name__)


class InferencerService:
    def __init__(
        self,
        *,
        settings: InferencerSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        trader: httpx.AsyncClient | None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.trader = trader
        self.executor = ThreadPoolExecutor(
            max_workers=settings.forward_threads, thread_name_prefix="inferencer-forward"
        )
        self.engine = InferenceEngine(self.executor)
        self._swap_lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self.decisions_made = 0

    # --- models ---------------------------------------------------------------------------------

    async def load(self, uri: str, *, expected_version: str | None = None) -> LoadedModel:
        """Load a model directory off the event loop and serve it (unless it is already served)."""
        async with self._swap_lock:
            current = self.engine.model
            if current is not None and current.uri == uri and expected_version in (None, current.version):
                return current
            loop = asyncio.get_running_loop()
            model = await loop.run_in_executor(None, load_model, uri)
            self.engine.swap(model)
            return model

    async def on_promoted(self, event: ModelPromotedV1) -> None:
        await self.load(event.artifact_uri, expected_version=event.version)

    async def refresh_from_registry(self) -> LoadedModel | None:
        """Load the registry's promoted model if it is not the one served (the fallback to events)."""
        async with self.sessionmaker() as session:
            promoted = await promoted_model(session)
        if promoted is not None:
            _, version, uri = promoted
            return await self.load(uri, expected_version=version)
        if self.engine.model is None and self.settings.model_uri:
            return await self.load(self.settings.model_uri)
        return self.engine.model

    async def start(self) -> None:
        try:
            await self.refresh_from_registry()
        except TradebotError as e:
            log.warning("inferencer.model_load_failed", error=e.message)
        self._poll_task = asyncio.create_task(self._poll_registry(), name="inferencer-registry-poll")

    async def stop(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, self.settings.task_stop_timeout_seconds)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _poll_registry(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_poll_seconds)
            try:
                await self.refresh_from_registry()
            except TradebotError as e:
                log.warning("inferencer.model_load_failed", error=e.message)
            except Exception:
                log.exception("inferencer.registry_poll_crashed")

    # --- decisions ------------------------------------------------------------------------------

    async def on_features(self, features: FeaturesV1) -> Decision | None:
        if features.timeframe not in self.settings.timeframes:
            return None
        started = time.perf_counter()
        decision = await self.engine.on_features(features)
        if decision is None:
            return None
        self.decisions_made += 1
        p = decision.prediction
        async with self.sessionmaker.begin() as session:
            await store_decision(
                session,
                {
                    "id": decision.id,
                    "symbol": decision.symbol,
                    "timeframe": decision.timeframe,
                    "feature_ts": decision.feature_ts,
                    "feature_set": decision.feature_set,
                    "close": decision.close,
                    "model_id": decision.model_id,
                    "model_version": decision.model_version,
                    "action_index": p.action_index,
                    "target_exposure": p.target_exposure,
                    "confidence": p.confidence,
                    "value": p.value,
                    "probabilities": p.probabilities,
                    "created_at": self.clock.now(),
                },
            )
        log.info(
            "inferencer.decided",
            decision_id=str(decision.id),
            symbol=decision.symbol,
            target_exposure=p.target_exposure,
            model_version=decision.model_version,
        )
        if self.settings.trade and self.trader is not None:
            await self.send(decision)
        DECISION_SECONDS.observe(time.perf_counter() - started)
        return decision

    async def send(self, decision: Decision) -> None:
        """POST /trade/execute with the decision id as the idempotency key; the outcome is stored."""
        assert self.trader is not None
        p = decision.prediction
        body: dict[str, Any] = {
            "decision_id": str(decision.id),
            "source": "decision",
            "symbol": decision.symbol,
            "target_exposure": f"{min(max(p.target_exposure, 0.0), 1.0):.6f}",
            "reference_price": decision.close,
            "confidence": min(max(p.confidence, 0.0), 1.0),
            "model_version": decision.model_version,
            "feature_ts": decision.feature_ts.isoformat(),
        }
        status, order_id, error = "error", None, None
        try:
            response = await self.trader.post("/trade/execute", json=body, headers={"X-Tradebot-Role": "trader"})
            if response.status_code == 200:
                result = response.json()
                order = result.get("order")
                status = order["status"] if order else "no_trade"
                order_id = uuid.UUID(order["id"]) if order else None
            else:
                error = f"HTTP {response.status_code}: {response.text[:150]}"
        except httpx.HTTPError as e:
            error = f"trader unreachable: {type(e).__name__}"
        if error:
            log.warning("inferencer.trade_failed", decision_id=str(decision.id), error=error)
        async with self.sessionmaker.begin() as session:
            await record_trade(session, decision.id, status, order_id, error)
