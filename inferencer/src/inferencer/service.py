"""The inferencer's business logic: load and swap models, decide, store, send to the trader.

Deciding on a bar reads what it needs from the database — the previous decision of the served
model on the symbol (its recurrent state) and the stored features before the bar — so replicas
and restarts all continue the same state (see ``engine``). A bar at or before the symbol's
newest decision is a redelivery or arrived late: it is skipped.

Each decision is stored *before* it is sent, as ``pending``, and the ``decisions`` table is the
outbox of trader calls: a call that fails for a reason that may pass (trader down, 503, 5xx,
timeout) is retried with backoff, always with the decision id as the idempotency key, until the
trader answers or the decision is too old (``expired``) or a newer decision on the symbol exists
(``superseded``: an older target must never be executed after a newer one).

Deciding and sending on one symbol hold a lock: in this process, and across replicas on
PostgreSQL (an advisory lock), so two replicas never interleave decisions on one symbol. The
trader call happens outside any database transaction: in all-in-one mode both services share
one SQLite file, and a transaction held across the call would block the trader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.clock import KST, Clock, to_kst
from common.contracts import FeaturesV1, ModelPromotedV1
from common.errors import TradebotError
from common.metrics import DECISION_SECONDS

from .engine import (
    Bar,
    Decision,
    InferenceEngine,
    ModelSlot,
    Recurrent,
    Row,
    WindowKey,
    decode_state,
    encode_state,
    same_session,
)
from .model import LoadedModel, Prediction, load_model
from .models import PENDING, RETRYING, UNSENT, DecisionRecord
from .repository import (
    decision,
    due_decisions,
    feature_bars,
    latest_decision,
    newer_decision_exists,
    promoted_model,
    record_trade,
    store_decision,
    supersede_unsent,
)
from .settings import InferencerSettings
from .trader import TraderClient

log = structlog.get_logger(__name__)

# Answers after which asking again may succeed; any other 4xx is final for the decision.
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


class InferencerService:
    def __init__(
        self,
        *,
        settings: InferencerSettings,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Clock,
        trader: TraderClient | None,
    ) -> None:
        self.settings = settings
        self.db = engine
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.trader = trader
        self.executor = ThreadPoolExecutor(
            max_workers=settings.forward_threads, thread_name_prefix="inferencer-forward"
        )
        self.engine = InferenceEngine(self.executor, burn_in=settings.burn_in_bars, memory_bars=settings.memory_bars)
        self._swap_lock = asyncio.Lock()
        self._symbol_locks: dict[str, asyncio.Lock] = {}
        # Each decision in flight holds up to two database connections (its lock and its reads):
        # bounded well below the pool, whatever the bus's prefetch.
        self._in_flight = asyncio.Semaphore(settings.concurrent_decisions)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.decisions_made = 0

    @property
    def trading(self) -> bool:
        return self.settings.trade and self.trader is not None

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
        self._tasks.append(asyncio.create_task(self._poll_registry(), name="inferencer-registry-poll"))
        if self.trading:
            self._tasks.append(asyncio.create_task(self._drain_outbox(), name="inferencer-outbox"))

    async def stop(self) -> None:
        """Let the background loops finish what they are doing (cancel them only past the timeout)."""
        tasks, self._tasks = self._tasks, []
        self._stopping.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, self.settings.task_stop_timeout_seconds)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False when the service is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    async def _poll_registry(self) -> None:
        while await self._pause(self.settings.registry_poll_seconds):
            try:
                await self.refresh_from_registry()
            except TradebotError as e:
                log.warning("inferencer.model_load_failed", error=e.message)
            except Exception:
                log.exception("inferencer.registry_poll_crashed")

    # --- one symbol at a time -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _symbol_lock(self, symbol: str, timeframe: str) -> AsyncIterator[None]:
        """Serialise work on one symbol: in this process, and across replicas on PostgreSQL."""
        name = f"inferencer:{symbol}:{timeframe}"
        async with self._in_flight, self._symbol_locks.setdefault(name, asyncio.Lock()):
            if self.db.dialect.name != "postgresql":
                yield  # SQLite serves one process (all-in-one): the local lock is the whole story
                return
            async with self.db.connect() as connection:
                key = func.hashtextextended(name, 0)
                await connection.execute(select(func.pg_advisory_lock(key)))
                try:
                    yield
                finally:
                    try:
                        await connection.execute(select(func.pg_advisory_unlock(key)))
                        await connection.commit()
                    except BaseException:
                        # Never hand a connection that may still hold the lock back to the pool.
                        await connection.invalidate()
                        raise

    # --- decisions ------------------------------------------------------------------------------

    async def on_features(self, features: FeaturesV1) -> Decision | None:
        if features.timeframe not in self.settings.timeframes:
            return None
        self.engine.remember(features)
        slot = self.engine.slot
        if slot is None:
            return None
        manifest = slot.model.manifest
        if features.timeframe != manifest.timeframe or features.feature_set != manifest.feature_set:
            return None  # another feature set or timeframe would give this model wrong inputs
        started = time.perf_counter()
        async with self._symbol_lock(features.symbol, features.timeframe):
            made = await self._decide(slot, features)
            if made is not None and self.trading:
                await self._send(made.id)
        if made is not None:
            DECISION_SECONDS.observe(time.perf_counter() - started)
        return made

    async def _decide(self, slot: ModelSlot, features: FeaturesV1) -> Decision | None:
        model = slot.model
        async with self.sessionmaker() as session:
            latest = await latest_decision(session, model.version, features.symbol, features.timeframe)
            if latest is not None and latest.feature_ts >= features.ts:
                log.info(
                    "inferencer.stale_features_skipped",
                    symbol=features.symbol,
                    ts=features.ts.isoformat(),
                    newest_decision=latest.feature_ts.isoformat(),
                )
                return None
            prior = _recurrent(model, latest)
            if prior is not None and not same_session(model, prior.ts, features.ts):
                prior = None  # yesterday's intraday memory does not carry into today
            history = await self._history(session, model, features, prior)
        made = await self.engine.decide(slot, features, prior, history)
        if made is None:
            return None
        now = self.clock.now()
        p = made.prediction
        async with self.sessionmaker.begin() as session:
            stored = await store_decision(
                session,
                {
                    "id": made.id,
                    "symbol": made.symbol,
                    "timeframe": made.timeframe,
                    "feature_ts": made.feature_ts,
                    "feature_set": made.feature_set,
                    "close": made.close,
                    "model_id": made.model_id,
                    "model_version": made.model_version,
                    "action_index": p.action_index,
                    "target_exposure": p.target_exposure,
                    "confidence": p.confidence,
                    "value": p.value,
                    "probabilities": p.probabilities,
                    "created_at": now,
                    "state": encode_state(made.state.h, made.state.c),
                    "trade_status": PENDING if self.trading else None,
                    "attempts": 0,
                },
            )
            superseded = await supersede_unsent(session, made.symbol, made.timeframe, made.feature_ts) if stored else 0
        if not stored:
            return None  # another replica stored it between our read and our write
        if superseded:
            log.warning("inferencer.decisions_superseded", symbol=made.symbol, count=superseded)
        self.decisions_made += 1
        log.info(
            "inferencer.decided",
            decision_id=str(made.id),
            symbol=made.symbol,
            target_exposure=p.target_exposure,
            model_version=made.model_version,
            steps=made.steps,
        )
        return made

    async def _history(
        self, session: AsyncSession, model: LoadedModel, features: FeaturesV1, prior: Recurrent | None
    ) -> list[Bar]:
        """The bars before ``features`` a decision needs: stored ones, completed by those in memory.

        Continuing ``prior``: every bar since it and the window before. Rebuilding: the KST day's
        bars (intraday) or the last ``burn_in`` bars (daily), and the window before them.
        """
        manifest = model.manifest
        extra = manifest.window - 1
        since: datetime | None
        if prior is not None:
            since = prior.ts
        elif manifest.timeframe == "1d":
            since, extra = None, extra + self.settings.burn_in_bars
        else:
            day = to_kst(features.ts).date()
            since = datetime(day.year, day.month, day.day, tzinfo=KST)
        stored = await feature_bars(
            session,
            features.symbol,
            features.timeframe,
            features.feature_set,
            before=features.ts,
            since=since,
            extra=extra,
        )
        return self._with_recent((features.symbol, features.timeframe, features.feature_set), features.ts, stored)

    def _with_recent(self, key: WindowKey, before: datetime, stored: list[Bar]) -> list[Bar]:
        """Stored bars completed by the recent ones in memory (not stored yet), oldest first."""
        merged: dict[datetime, Row] = dict(self.engine.recent(key, before))
        merged.update(stored)
        return sorted(merged.items())

    # --- the outbox -----------------------------------------------------------------------------

    async def _send(self, decision_id: uuid.UUID) -> None:
        """Send one unsent decision to the trader (the caller holds its symbol's lock) and store the outcome."""
        assert self.trader is not None
        async with self.sessionmaker() as session:
            record = await decision(session, decision_id)
            if record is None or record.trade_status not in UNSENT:
                return
            newer = await newer_decision_exists(session, record.symbol, record.timeframe, record.feature_ts)
        now = self.clock.now()
        if newer:
            await self._finish(record, "superseded", None, "a decision on a later bar exists", sent=False)
            return
        if now - record.created_at > timedelta(seconds=self.settings.send_max_age_seconds):
            limit = self.settings.send_max_age_seconds
            await self._finish(record, "expired", None, f"not taken by the trader within {limit:g} s", sent=False)
            return
        error: str
        try:
            response = await self.trader.execute(_execute_body(record))
        except httpx.TransportError as e:
            error = f"trader unreachable: {type(e).__name__}"
        else:
            if response.status_code == 200:
                order = response.json().get("order")
                status = order["status"] if order else "no_trade"
                await self._finish(record, status, uuid.UUID(order["id"]) if order else None, None)
                return
            error = f"HTTP {response.status_code}: {response.text[:150]}"
            if response.status_code not in RETRYABLE_STATUS:
                await self._finish(record, "rejected", None, error)
                return
        attempts = record.attempts + 1
        wait = min(self.settings.retry_max_seconds, self.settings.outbox_poll_seconds * 2 ** (attempts - 1))
        log.warning(
            "inferencer.trade_failed", decision_id=str(record.id), error=error, attempts=attempts, retry_in=wait
        )
        async with self.sessionmaker.begin() as session:
            await record_trade(
                session,
                record.id,
                RETRYING,
                None,
                error,
                attempts=attempts,
                next_attempt_at=now + timedelta(seconds=wait),
            )

    async def _finish(
        self, record: DecisionRecord, status: str, order_id: uuid.UUID | None, error: str | None, *, sent: bool = True
    ) -> None:
        if status in ("superseded", "expired", "rejected"):
            log.warning("inferencer.decision_not_traded", decision_id=str(record.id), status=status, reason=error)
        async with self.sessionmaker.begin() as session:
            attempts = record.attempts + 1 if sent else record.attempts
            await record_trade(session, record.id, status, order_id, error, attempts=attempts)

    async def drain_outbox_once(self, limit: int = 100) -> int:
        """Retry the due unsent decisions (oldest first); returns how many were looked at."""
        async with self.sessionmaker() as session:
            due = await due_decisions(session, self.clock.now(), limit)
        for record in due:
            async with self._symbol_lock(record.symbol, record.timeframe):
                await self._send(record.id)
        return len(due)

    async def _drain_outbox(self) -> None:
        while await self._pause(self.settings.outbox_poll_seconds):
            try:
                await self.drain_outbox_once()
            except Exception:
                log.exception("inferencer.outbox_failed")

    # --- predictions without side effects -------------------------------------------------------

    async def predict(
        self, symbol: str, timeframe: str, rows: list[Row] | None, position: float | None
    ) -> tuple[LoadedModel, Prediction, bool] | None:
        """On given rows (zero state) or on the symbol's latest window and state: ``(model, prediction,
        used_latest)``, or None when there is no model or not enough rows. Nothing is stored."""
        slot = self.engine.slot
        if slot is None:
            return None
        model = slot.model
        window = model.manifest.window
        if rows is not None:
            if len(rows) < window:
                return None
            return model, await self.engine.predict(slot, rows[-window:], position or 0.0, None), False
        key = (symbol, timeframe, model.manifest.feature_set)
        async with self.sessionmaker() as session:
            latest = await latest_decision(session, model.version, symbol, timeframe)
            stored = await feature_bars(session, *key, before=END_OF_TIME, since=None, extra=window)
        bars = self._with_recent(key, END_OF_TIME, stored)[-window:]
        if len(bars) < window:
            return None
        state = _recurrent(model, latest)
        used_position = position if position is not None else (state.position if state else 0.0)
        prediction = await self.engine.predict(slot, [row for _, row in bars], used_position, state)
        return model, prediction, True


def _recurrent(model: LoadedModel, record: DecisionRecord | None) -> Recurrent | None:
    """The state stored with a decision, when it has one that fits the model."""
    if record is None or record.state is None:
        return None
    state = decode_state(model, record.state)
    if state is None:
        return None
    h, c = state
    return Recurrent(ts=record.feature_ts, h=h, c=c, position=record.target_exposure)


def _execute_body(record: DecisionRecord) -> dict[str, Any]:
    return {
        "decision_id": str(record.id),
        "source": "decision",
        "symbol": record.symbol,
        "target_exposure": f"{min(max(record.target_exposure, 0.0), 1.0):.6f}",
        "reference_price": record.close,
        "confidence": min(max(record.confidence, 0.0), 1.0),
        "model_version": record.model_version,
        "feature_ts": record.feature_ts.isoformat(),
    }
