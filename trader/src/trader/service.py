"""The trader's business logic: decisions into orders, the kill switch, the active/passive life
cycle and its background work (lease renewal, fill notices, polling, reconciliation).

An instance is *active* only while it holds the account lease; a passive replica answers reads
and refuses writes (503) until it takes over. On becoming active it reconciles first (settling
orders a crashed predecessor left in flight), then starts listening for fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus import MessageBus
from common.clock import Clock, kst_today
from common.errors import InvalidInput, NotFound, TradebotError, Unavailable
from common.krx import round_to_tick, ticks_away

from . import repository
from .broker import Broker, Side
from .lease import Lease
from .ledger import affordable_quantity, buy_cost, equity, unrealised_pnl
from .models import Order
from .notifications import Notifier
from .orders import OrderManager, OrderRequest
from .performance import EquityPoint, PriceSeries, snapshot_equity, snapshot_prices
from .performance import performance as performance_of
from .reconcile import Reconciler
from .repository import TraderRepository, write_transaction
from .risk import RiskEngine
from .schemas import (
    ExecuteRequest,
    ExecutionResult,
    KillSwitchRequest,
    KillSwitchView,
    OrderView,
    PerformanceView,
    PnlView,
)
from .settings import TraderSettings

log = structlog.get_logger(__name__)

UNCONFIGURED_ACCOUNT = "unconfigured"


class TraderService:
    def __init__(
        self,
        *,
        settings: TraderSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: MessageBus,
        clock: Clock,
        broker: Broker | None,
        notifier: Notifier,
        lease_clock: Clock | None = None,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.broker = broker
        self.notifier = notifier
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.account = broker.account_key if broker else UNCONFIGURED_ACCOUNT
        self.lease = Lease(sessionmaker, self.account, self.instance, settings.lease_ttl_seconds, lease_clock)
        self.manager: OrderManager | None = None
        self.reconciler: Reconciler | None = None
        if broker is not None:
            self.manager = OrderManager(
                sessionmaker=sessionmaker,
                account=self.account,
                broker=broker,
                risk=RiskEngine(settings.risk),
                clock=clock,
                bus=bus,
                notifier=notifier,
                settings=settings,
            )
            self.reconciler = Reconciler(self.manager, adopt_broker=settings.reconcile_adopt_broker)
        self.active = False
        self._lease_task: asyncio.Task[None] | None = None
        self._active_tasks: list[asyncio.Task[None]] = []
        self.notices_connected = asyncio.Event()
        self._symbol_locks: dict[str, asyncio.Lock] = {}

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Try the lease once (so a lone instance is active before it serves), then keep trying."""
        self.notifier.start()
        await self._lease_step()
        self._lease_task = asyncio.create_task(self._lease_loop(), name="trader-lease")

    async def stop(self) -> None:
        timeout = self.settings.task_stop_timeout_seconds
        if self._lease_task is not None:
            await _cancel(self._lease_task, timeout)
            self._lease_task = None
        await self._become_passive()
        with contextlib.suppress(Exception):
            await self.lease.release()
        await self.notifier.stop(timeout)
        if self.broker is not None:
            await self.broker.aclose()

    async def _lease_loop(self) -> None:
        interval = self.settings.lease_ttl_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._lease_step()
            except Exception:
                # A database hiccup: stop writing at once, since the lease can no longer be proven.
                log.exception("trader.lease_error")
                await self._become_passive()

    async def _lease_step(self) -> None:
        held = await self.lease.try_acquire()
        if held and not self.active:
            await self._become_active()
        elif not held and self.active:
            await self._become_passive()

    async def _become_active(self) -> None:
        self.active = True
        log.info("trader.active", instance=self.instance)
        if self.manager is None or self.reconciler is None:
            return
        try:
            await self.reconciler.run(recovering=True)
        except TradebotError as e:
            log.warning("trader.initial_reconciliation_failed", error=e.message)
            self.notifier.notify("error", f"initial reconciliation failed: {e.message}")
        self._active_tasks = [
            asyncio.create_task(self._every(self.settings.poll_interval_seconds, self._poll), name="trader-poll"),
            asyncio.create_task(
                self._every(self.settings.reconcile_interval_seconds, self._reconcile), name="trader-reconcile"
            ),
        ]
        if self.settings.use_fill_notices:
            self._active_tasks.append(asyncio.create_task(self._notice_loop(), name="trader-notices"))

    async def _become_passive(self) -> None:
        if self.active:
            log.info("trader.passive", instance=self.instance)
        self.active = False
        tasks, self._active_tasks = self._active_tasks, []
        for task in tasks:
            await _cancel(task, self.settings.task_stop_timeout_seconds)

    async def _every(self, seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except TradebotError as e:
                log.warning("trader.background_failed", work=getattr(work, "__name__", "?"), error=e.message)
            except Exception:
                log.exception("trader.background_crashed", work=getattr(work, "__name__", "?"))
                self.notifier.notify("error", "a background task of the trader failed; see the logs")

    async def _poll(self) -> int:
        assert self.manager is not None
        return await self.manager.poll_open_orders()

    async def _reconcile(self) -> object:
        assert self.reconciler is not None
        return await self.reconciler.run()

    async def _notice_loop(self) -> None:
        assert self.broker is not None and self.manager is not None
        while True:
            try:
                self.notices_connected.set()
                async for notice in self.broker.notices():
                    try:
                        await self.manager.on_notice(notice)
                    except Exception:
                        log.exception("trader.notice_failed", order_no=notice.oder_no)
                log.warning("trader.notice_stream_ended")
            except TradebotError as e:
                log.warning("trader.notice_stream_failed", error=e.message)
            except Exception:
                log.exception("trader.notice_stream_crashed")
            self.notices_connected.clear()
            await asyncio.sleep(1.0)

    # --- guards ------------------------------------------------------------------------------

    def require_active(self) -> OrderManager:
        if self.manager is None:
            raise Unavailable("no broker account is configured for this trader (KIS_* settings)")
        if not self.active:
            raise Unavailable("this trader replica is passive: another instance holds the account lease")
        return self.manager

    # --- orders ------------------------------------------------------------------------------

    async def place(
        self, side: str, symbol: str, quantity: int, price: int | None, key: str | None
    ) -> tuple[Order, bool]:
        manager = self.require_active()
        request = OrderRequest(
            idempotency_key=key or f"manual-{uuid.uuid4()}",
            source="manual",
            symbol=symbol,
            side="buy" if side == "buy" else "sell",
            quantity=quantity,
            price=price,
        )
        return await manager.submit(request)

    async def execute(self, request: ExecuteRequest) -> ExecutionResult:
        """Turn a decision (or a manual instruction) into at most one order for its key."""
        manager = self.require_active()
        key = request.key or f"{request.source}-{uuid.uuid4()}"
        async with self.sessionmaker() as session:
            existing = await TraderRepository(session, self.account).order_by_key(key)
        if existing is not None:
            return ExecutionResult(
                idempotency_key=key, action=existing.side, created=False, order=OrderView.of(existing)
            )
        decision = {
            "target_exposure": str(request.target_exposure) if request.target_exposure is not None else None,
            "action": request.action,
            "confidence": request.confidence,
            "model_version": request.model_version,
            "feature_ts": request.feature_ts.isoformat() if request.feature_ts else None,
            "reference_price": request.reference_price,
        }
        if request.action == "hold":
            return ExecutionResult(idempotency_key=key, action="none", created=False, order=None, reason="hold")
        # Decisions on one symbol are sized and placed one at a time: two sized concurrently
        # would each see the other's order missing and both trade.
        async with self._symbol_locks.setdefault(request.symbol, asyncio.Lock()):
            if request.action in ("buy", "sell"):
                assert request.quantity is not None
                side: Side = request.action
                quantity = request.quantity
                price = request.price if request.order_type != "market" else None
            else:
                sized = await self._size(request)
                if isinstance(sized, str):
                    return ExecutionResult(idempotency_key=key, action="none", created=False, order=None, reason=sized)
                side, quantity, price = sized
            order, created = await manager.submit(
                OrderRequest(
                    idempotency_key=key,
                    source=request.source,
                    symbol=request.symbol,
                    side=side,
                    quantity=quantity,
                    price=price,
                    decision=decision,
                ),
                looked_up=True,
            )
        return ExecutionResult(idempotency_key=key, action=side, created=created, order=OrderView.of(order))

    async def _size(self, request: ExecuteRequest) -> tuple[Side, int, int | None] | str:
        """(side, quantity, limit price) that moves the symbol towards the target exposure, or why not."""
        assert self.manager is not None and self.broker is not None and request.target_exposure is not None
        band = await self.broker.price_band(request.symbol, kst_today(self.clock))
        reference = request.reference_price or band.last
        if reference <= 0:
            raise InvalidInput(f"no reference price for {request.symbol}")
        async with self.sessionmaker() as session:
            repo = TraderRepository(session, self.account)
            ledger = await repo.ledger()
            if ledger is None:
                raise Unavailable("the trader has not reconciled with the broker yet")
            positions = await repo.positions()
            open_orders = await repo.open_orders()
        # Value the decision's symbol at the price the decision saw.
        total = ledger.cash + sum(
            p.quantity * (reference if p.symbol == request.symbol else p.last_price) for p in positions
        )
        held = next((p.quantity for p in positions if p.symbol == request.symbol), 0)
        pending = sum(
            (o.quantity - o.filled_quantity) * (1 if o.side == "buy" else -1)
            for o in open_orders
            if o.symbol == request.symbol
        )
        target_value = Decimal(total) * request.target_exposure
        target_quantity = int(target_value // reference)
        delta = target_quantity - (held + pending)
        threshold = max(Decimal(self.settings.min_rebalance_krw), self.settings.rebalance_band * total, Decimal(1))
        if abs(delta) * reference < threshold:
            return f"at target: holding {held} (+{pending} pending), target {target_quantity}"
        market = (request.order_type or self.settings.decision_order_type) == "market"
        ticks = self.settings.decision_slippage_ticks
        if delta > 0:
            price = (
                min(ticks_away(round_to_tick(reference), ticks), band.upper)
                if band.upper
                else ticks_away(round_to_tick(reference), ticks)
            )
            reserved = sum(
                buy_cost(o.quantity - o.filled_quantity, o.reserve_price) for o in open_orders if o.side == "buy"
            )
            unit = band.upper if market else price
            quantity = min(delta, affordable_quantity(ledger.cash - reserved, unit))
            if quantity <= 0:
                return "no cash available for the buy"
            return "buy", quantity, None if market else price
        price = max(ticks_away(round_to_tick(reference, up=True), -ticks), band.lower)
        sellable = held - sum(
            o.quantity - o.filled_quantity for o in open_orders if o.symbol == request.symbol and o.side == "sell"
        )
        quantity = min(-delta, sellable)
        if quantity <= 0:
            return "nothing sellable"
        return "sell", quantity, None if market else price

    async def cancel(self, order_id: uuid.UUID, actor: str | None) -> Order:
        return await self.require_active().cancel(order_id, actor)

    # --- kill switch -------------------------------------------------------------------------

    async def kill_switch(self) -> KillSwitchView:
        async with self.sessionmaker() as session:
            row = await TraderRepository(session, self.account).kill_switch()
        if row is None:
            return KillSwitchView(engaged=False, reason=None, actor=None, changed_at=None)
        return KillSwitchView(engaged=row.engaged, reason=row.reason, actor=row.actor, changed_at=row.changed_at)

    async def set_kill_switch(self, request: KillSwitchRequest, actor: str) -> KillSwitchView:
        """Engage or release; engaging can also cancel open orders and flatten every position."""
        now = self.clock.now()
        async with write_transaction(self.sessionmaker) as session:
            await TraderRepository(session, self.account).set_kill_switch(request.engaged, request.reason, actor, now)
        state = "ENGAGED" if request.engaged else "released"
        log.warning("trader.kill_switch_changed", engaged=request.engaged, actor=actor, reason=request.reason)
        self.notifier.notify("kill_switch", f"kill switch {state} by {actor}: {request.reason}")
        view = await self.kill_switch()
        if not request.engaged or not (request.cancel_open_orders or request.flatten):
            return view
        manager = self.require_active()
        async with self.sessionmaker() as session:
            open_orders = await TraderRepository(session, self.account).open_orders()
        for order in open_orders:
            if order.broker_order_no is None:
                continue
            try:
                cancelled = await manager.cancel(order.id, actor)
                view.cancelled_orders.append(cancelled.id)
            except TradebotError as e:
                log.warning("trader.kill_switch_cancel_failed", order_id=str(order.id), error=e.message)
        if request.flatten:
            async with self.sessionmaker() as session:
                positions = await TraderRepository(session, self.account).positions(held_only=True)
            stamp = now.strftime("%Y%m%dT%H%M%S")
            for position in positions:
                if position.quantity <= 0:
                    continue
                order, _ = await manager.submit(
                    OrderRequest(
                        idempotency_key=f"flatten-{stamp}-{position.symbol}",
                        source="flatten",
                        symbol=position.symbol,
                        side="sell",
                        quantity=position.quantity,
                        price=None,
                    )
                )
                view.flatten_orders.append(order.id)
        return view

    # --- reads -------------------------------------------------------------------------------

    async def pnl(self, session: AsyncSession) -> PnlView:
        repo = TraderRepository(session, self.account)
        ledger = await repo.ledger()
        if ledger is None:
            raise NotFound("no account ledger yet: the trader has not reconciled with the broker")
        positions = await repo.positions()
        value = sum(p.quantity * p.last_price for p in positions)
        total = equity(ledger, positions)
        unrealised = sum(unrealised_pnl(p) for p in positions)
        peak = max(ledger.peak_equity, total)
        return PnlView(
            cash=ledger.cash,
            market_value=value,
            equity=total,
            realised_pnl=ledger.realised_pnl,
            unrealised_pnl=unrealised,
            fees_paid=ledger.fees_paid,
            net_pnl=ledger.realised_pnl + unrealised - ledger.fees_paid,
            day_start_equity=ledger.day_start_equity,
            day_pnl=total - ledger.day_start_equity if ledger.day_start_equity is not None else None,
            peak_equity=peak,
            drawdown=(Decimal(peak - total) / Decimal(peak)).quantize(Decimal("0.0001")) if peak > 0 else Decimal(0),
        )

    async def performance(self, session: AsyncSession, symbols: list[str], limit: int) -> PerformanceView:
        """Equity curve since the first stored reconciliation, with its benchmark and metrics."""
        stored = await repository.snapshots(session, self.account, 20_000)
        points = [EquityPoint(s.at, snapshot_equity(s)) for s in stored]
        repo = TraderRepository(session, self.account)
        ledger = await repo.ledger()
        positions = await repo.positions()
        if ledger is not None:
            points.append(EquityPoint(self.clock.now(), equity(ledger, positions)))
        fills = await repository.all_fills(session, self.account, 50_000)
        chosen = symbols or sorted({p.symbol for p in positions} | {f.symbol for f in fills})
        prices: dict[str, PriceSeries] = {}
        if points and chosen:
            start, end = min(p.at for p in points), max(p.at for p in points)
            closes = await repository.daily_closes(session, chosen, start, end)
            held_prices = snapshot_prices(stored)
            for symbol in chosen:
                prices[symbol] = PriceSeries(closes.get(symbol) or held_prices.get(symbol, []))
        return performance_of(points, prices, fills, limit=limit)


async def _cancel(task: asyncio.Task[None], timeout: float) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, timeout)
