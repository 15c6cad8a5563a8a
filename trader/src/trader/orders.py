"""Order management: idempotent submission, the state machine, fills and recovery.

The order row is written (NEW, with the attempt counted) *before* the broker hears of it and
updated right after it answers, each in its own transaction — the one place where this service
commits by itself, because the state must be durable across the broker call. KIS order bodies
carry no client id, so an answer lost in a timeout or a crash is resolved by asking the broker
(inquire-daily-ccld) for an order with the same symbol, side, quantity and price that no other
row claims; only when the broker has none is the order sent again (or given up).

Fills arrive twice — per execution in the WebSocket notice, cumulatively in polling — and are
booked as *progress* of the order's cumulative filled quantity: each fill's id is the order id
plus the cumulative quantity after it, so whichever source comes second finds nothing to add.

One asyncio lock per account serialises every write that reads-then-updates (risk checks, fill
booking); only one process writes per account (``lease``), so that is enough.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.bus import MessageBus
from common.clock import Clock, kst_datetime, kst_today, to_kst
from common.contracts import (
    Envelope,
    FillV1,
    OrderAcceptedV1,
    OrderCancelledV1,
    OrderRejectedV1,
    OrderSubmittedV1,
)
from common.errors import Conflict, NotFound, Operational, Rejected, Retryable, TradebotError, Unavailable
from common.kis import ExecutionNotice, KisError, OrderOutcomeUnknown, OrderRecord
from common.krx import SESSION_CLOSE

from .broker import Broker, PriceBand, Side
from .ledger import apply_fill, buy_cost, equity, fill_costs
from .models import Order, OrderStatus, Position, TraderAccount
from .notifications import Notifier
from .repository import TraderRepository, minute_ago, write_transaction
from .risk import OrderIntent, RiskContext, RiskEngine, RiskViolation
from .settings import TraderSettings

log = structlog.get_logger(__name__)

Source = Literal["decision", "manual", "flatten"]
OrderEvent = OrderSubmittedV1 | OrderAcceptedV1 | OrderRejectedV1 | OrderCancelledV1 | FillV1

# How long an order whose submission outcome is unknown may stay unresolved before the poller,
# finding nothing at the broker, gives it up (the broker lists an order as soon as it accepts it).
UNKNOWN_OUTCOME_GRACE = timedelta(seconds=30)
UNMATCHED_NOTICE_LIMIT = 1000


def normal_order_no(order_no: str) -> str:
    """KIS pads order numbers with zeros in some answers and not in others."""
    return order_no.strip().lstrip("0") or "0"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    idempotency_key: str
    source: Source
    symbol: str
    side: Side
    quantity: int
    price: int | None  # None: market order
    decision: dict[str, Any] | None = None


@dataclass
class Outbox:
    """What to publish and notify once the transaction that produced it has committed."""

    events: list[tuple[str, OrderEvent, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    engage_kill_switch: str | None = None


class OrderManager:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        account: str,
        broker: Broker,
        risk: RiskEngine,
        clock: Clock,
        bus: MessageBus,
        notifier: Notifier,
        settings: TraderSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.account = account
        self.broker = broker
        self.risk = risk
        self.clock = clock
        self.bus = bus
        self.notifier = notifier
        self.settings = settings
        self.lock = asyncio.Lock()
        self._submitting: set[uuid.UUID] = set()
        self._unmatched: dict[str, list[ExecutionNotice]] = {}

    def repo(self, session: AsyncSession) -> TraderRepository:
        return TraderRepository(session, self.account)

    # --- submission ----------------------------------------------------------------------------

    async def submit(self, request: OrderRequest, *, looked_up: bool = False) -> tuple[Order, bool]:
        """The order for ``request.idempotency_key``: the existing one, or a new one sent to the broker.

        Returns ``(order, created)``. Risk violations give a REJECTED order (stored, so the same
        request again returns it); an unreachable broker before anything was sent raises.
        ``looked_up``: the caller has just found no order for the key, so the early lookup is
        skipped (the one inside the write transaction still decides).
        """
        if not looked_up:
            async with self.sessionmaker() as session:
                existing = await self.repo(session).order_by_key(request.idempotency_key)
            if existing is not None:
                return existing, False
        day = kst_today(self.clock)
        band = await self.broker.price_band(request.symbol, day)
        if band.base <= 0:
            raise NotFound(f"symbol {request.symbol} is not traded at the broker")
        outbox = Outbox()
        async with self.lock:
            try:
                async with write_transaction(self.sessionmaker) as session:
                    repo = self.repo(session)
                    existing = await repo.order_by_key(request.idempotency_key)
                    if existing is not None:
                        return existing, False
                    order = await self._create(repo, request, band, day, outbox)
            except IntegrityError:
                # Another request with the same key won the insert: return its order.
                async with self.sessionmaker() as session:
                    raced = await self.repo(session).order_by_key(request.idempotency_key)
                if raced is None:
                    raise
                return raced, False
        await self._flush(outbox)
        if order.state is OrderStatus.NEW:
            order = await self._send(order)
        return order, True

    async def _create(
        self, repo: TraderRepository, request: OrderRequest, band: PriceBand, day: date, outbox: Outbox
    ) -> Order:
        now = self.clock.now()
        intent = OrderIntent(request.side, request.symbol, request.quantity, request.price)
        order = Order(
            id=uuid.uuid4(),
            account=self.account,
            idempotency_key=request.idempotency_key,
            source=request.source,
            symbol=request.symbol,
            side=request.side,
            order_type="market" if request.price is None else "limit",
            quantity=request.quantity,
            limit_price=request.price,
            reserve_price=request.price or (band.upper if request.side == "buy" else band.lower),
            status=OrderStatus.NEW.value,
            filled_quantity=0,
            filled_value=0,
            notified_quantity=0,
            commission=0,
            tax=0,
            submit_attempts=0,
            trading_day=day,
            decision=request.decision,
            created_at=now,
            updated_at=now,
        )
        flatten = request.source == "flatten"
        violation: RiskViolation | None = None
        try:
            # The account as it is *before* this order: it is added only after the check.
            ctx = await self.risk_context(repo, request.symbol, now, band, ignore_kill_switch=flatten)
            approval = self.risk.check(intent, band, ctx)
        except RiskViolation as refused:
            violation = refused
        repo.add_order(order)
        repo.audit(
            "order.created", now, order=order, source=request.source, quantity=request.quantity, price=request.price
        )
        if violation is not None:
            order.reject_reason = f"risk:{violation.rule}: {violation.reason}"
            repo.transition(
                order, OrderStatus.REJECTED, now, "order.rejected", rule=violation.rule, reason=violation.reason
            )
            self._event(outbox, "rejected", order, OrderRejectedV1, reason=order.reject_reason)
            outbox.notes.append(
                ("rejection", f"order {request.side} {request.quantity} {request.symbol} rejected: {violation.reason}")
            )
            if violation.engage_kill_switch:
                outbox.engage_kill_switch = violation.reason
            log.info("trader.order_rejected", order_id=str(order.id), rule=violation.rule, symbol=order.symbol)
            return order
        if approval.price is not None:
            order.limit_price = approval.price
            order.reserve_price = approval.price
        order.submit_attempts = 1
        order.submitted_at = now
        repo.audit("order.submitting", now, order=order, attempt=1, price=order.limit_price)
        self._event(outbox, "submitted", order, OrderSubmittedV1)
        return order

    async def _send(self, order: Order) -> Order:
        """Send a NEW order to the broker and persist what it answered."""
        self._submitting.add(order.id)
        try:
            while True:
                try:
                    ack = await self.broker.place(order.side, order.symbol, order.quantity, order.limit_price)  # type: ignore[arg-type]
                except OrderOutcomeUnknown as e:
                    log.warning("trader.order_outcome_unknown", order_id=str(order.id), error=e.message)
                    resolved, retry = await self._resolve_unknown(order.id)
                    if retry:
                        continue
                    return resolved
                except Rejected as e:
                    return await self._reject(order.id, _broker_reason(e))
                except Retryable as e:
                    # Refused before anything was sent (rate limit, connection refused): safe to give up.
                    return await self._reject(order.id, f"broker unavailable: {_broker_reason(e)}")
                except TradebotError as e:
                    self.notifier.notify("error", f"order {order.symbol} failed: {e.message}")
                    return await self._reject(order.id, f"broker error: {_broker_reason(e)}")
                return await self._accepted(order.id, ack.order_no, ack.org_no)
        finally:
            self._submitting.discard(order.id)

    async def _accepted(
        self, order_id: uuid.UUID, order_no: str, org_no: str, record: OrderRecord | None = None
    ) -> Order:
        outbox = Outbox()
        async with self.lock:
            async with write_transaction(self.sessionmaker) as session:
                repo = self.repo(session)
                order = await repo.order(order_id, for_update=True)
                if order is None:
                    raise Operational(f"order {order_id} vanished")
                if order.state is OrderStatus.NEW:
                    order.broker_order_no = normal_order_no(order_no)
                    order.broker_org_no = org_no
                    now = self.clock.now()
                    repo.transition(
                        order, OrderStatus.SUBMITTED, now, "order.accepted", broker_order_no=order.broker_order_no
                    )
                    self._event(outbox, "accepted", order, OrderAcceptedV1, broker_order_no=order.broker_order_no)
                    log.info(
                        "trader.order_accepted",
                        order_id=str(order.id),
                        symbol=order.symbol,
                        broker_order_no=order.broker_order_no,
                    )
                if record is not None:
                    await self._progress(repo, order, record.filled_quantity, record.filled_amount, "poll", outbox)
                    self._close_if_done(repo, order, record, outbox)
                pending = self._unmatched.pop(order.broker_order_no or "", [])
                for notice in pending:
                    await self._notice_progress(repo, order, notice, outbox)
        await self._flush(outbox)
        return order

    async def _reject(self, order_id: uuid.UUID, reason: str) -> Order:
        outbox = Outbox()
        async with self.lock:
            async with write_transaction(self.sessionmaker) as session:
                repo = self.repo(session)
                order = await repo.order(order_id, for_update=True)
                if order is None:
                    raise Operational(f"order {order_id} vanished")
                if not order.state.is_final and order.filled_quantity == 0:
                    order.reject_reason = reason[:1000]
                    repo.transition(order, OrderStatus.REJECTED, self.clock.now(), "order.rejected", reason=reason)
                    self._event(outbox, "rejected", order, OrderRejectedV1, reason=order.reject_reason)
                    outbox.notes.append(
                        ("rejection", f"order {order.side} {order.quantity} {order.symbol} rejected: {reason}")
                    )
                    log.info("trader.order_rejected", order_id=str(order.id), reason=reason)
        await self._flush(outbox)
        return order

    async def _resolve_unknown(self, order_id: uuid.UUID) -> tuple[Order, bool]:
        """After a lost answer: adopt the broker's order, or allow one more attempt, or give up.

        Returns ``(order, retry)``. Never resends before the broker said it has no such order.
        """
        async with self.sessionmaker() as session:
            order = await self.repo(session).order(order_id)
        assert order is not None
        try:
            records = await self.broker.daily_orders(order.trading_day)
        except TradebotError as e:
            # Cannot ask now: leave the order NEW; the poller resolves it once the broker answers.
            log.warning("trader.order_unresolved", order_id=str(order.id), error=e.message)
            return order, False
        async with self.sessionmaker() as session:
            known = await self.repo(session).known_broker_order_numbers()
        match = match_broker_order(order, records, known)
        if match is not None:
            log.info("trader.order_adopted", order_id=str(order.id), broker_order_no=match.order_no)
            return await self._accepted(order.id, match.order_no, match.branch_no, match), False
        if order.submit_attempts >= self.settings.max_submit_attempts:
            return await self._reject(order.id, "no answer from the broker and no such order there"), False
        async with self.lock:
            async with write_transaction(self.sessionmaker) as session:
                repo = self.repo(session)
                current = await repo.order(order.id, for_update=True)
                assert current is not None
                current.submit_attempts += 1
                current.submitted_at = self.clock.now()
                repo.audit("order.resubmitting", current.submitted_at, order=current, attempt=current.submit_attempts)
        return current, True

    # --- fills -----------------------------------------------------------------------------------

    async def on_notice(self, notice: ExecutionNotice) -> None:
        """A H0STCNI0/9 notice: book a fill, or a broker-side rejection."""
        if not (notice.is_fill or notice.is_rejected) or notice.rctf_cls not in ("", "0"):
            return
        order_no = normal_order_no(notice.oder_no)
        outbox = Outbox()
        async with self.lock:
            async with write_transaction(self.sessionmaker) as session:
                repo = self.repo(session)
                order = await repo.order_by_broker_no(order_no)
                if order is None:
                    # The fill beat our own record of the acknowledgement: keep it for a moment.
                    if sum(len(v) for v in self._unmatched.values()) < UNMATCHED_NOTICE_LIMIT:
                        self._unmatched.setdefault(order_no, []).append(notice)
                    return
                if notice.is_fill:
                    await self._notice_progress(repo, order, notice, outbox)
                elif order.state is OrderStatus.SUBMITTED and order.filled_quantity == 0:
                    order.reject_reason = "rejected by the broker (notice)"
                    repo.transition(order, OrderStatus.REJECTED, self.clock.now(), "order.rejected", source="notice")
                    self._event(outbox, "rejected", order, OrderRejectedV1, reason=order.reject_reason)
        await self._flush(outbox)

    async def _notice_progress(
        self, repo: TraderRepository, order: Order, notice: ExecutionNotice, outbox: Outbox
    ) -> None:
        order.notified_quantity += notice.cntg_qty
        if order.notified_quantity <= order.filled_quantity:
            return  # polling booked it already
        delta = order.notified_quantity - order.filled_quantity
        at = kst_datetime(order.trading_day, notice.stck_cntg_hour) if notice.stck_cntg_hour else self.clock.now()
        await self._progress(
            repo, order, order.notified_quantity, order.filled_value + delta * notice.cntg_unpr, "notice", outbox, at=at
        )

    async def _progress(
        self,
        repo: TraderRepository,
        order: Order,
        filled_total: int,
        value_total: int,
        source: str,
        outbox: Outbox,
        *,
        at: datetime | None = None,
    ) -> None:
        """Book whatever the broker's cumulative figures add to what the order already has."""
        delta = min(filled_total, order.quantity) - order.filled_quantity
        if delta <= 0:
            return
        gross = value_total - order.filled_value
        if gross <= 0:
            log.warning("trader.fill_without_value", order_id=str(order.id), quantity=delta)
            return
        now = self.clock.now()
        at = at or now
        costs = fill_costs(order, gross, order.trading_day)
        fill_id = f"{order.id}:{order.filled_quantity + delta}"
        price = max(1, round(gross / delta))
        if not await repo.insert_fill(
            {
                "fill_id": fill_id,
                "order_id": order.id,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": delta,
                "price": price,
                "gross": gross,
                "commission": costs.commission,
                "tax": costs.tax,
                "source": source,
                "filled_at": at,
            }
        ):
            return
        ledger = await repo.ledger(for_update=True)
        if ledger is None:
            raise Operational("the account ledger is not initialised (no reconciliation yet)")
        position = await repo.position(order.symbol, now)
        realised = apply_fill(ledger, position, order.side, delta, gross, costs)
        position.updated_at = ledger.updated_at = now
        order.filled_quantity += delta
        order.filled_value += gross
        order.commission += costs.commission
        order.tax += costs.tax
        if order.state is OrderStatus.NEW:
            repo.transition(order, OrderStatus.SUBMITTED, now, "order.adopted", source=source)
        status = OrderStatus.FILLED if order.filled_quantity >= order.quantity else OrderStatus.PARTIALLY_FILLED
        repo.transition(
            order, status, now, "order.fill", quantity=delta, price=price, gross=gross, source=source,
            commission=costs.commission, tax=costs.tax, realised_pnl=realised,
        )  # fmt: skip
        fill = FillV1(
            fill_id=fill_id,
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            quantity=delta,
            price=price,
            commission=costs.commission,
            tax=costs.tax,
            filled_at=at,
        )
        outbox.events.append((f"fill.{order.symbol}", fill, order.idempotency_key))
        outbox.notes.append(
            ("fill", f"{order.side} {delta} {order.symbol} @ {price} KRW ({order.filled_quantity}/{order.quantity})")
        )
        log.info(
            "trader.order_filled",
            order_id=str(order.id),
            symbol=order.symbol,
            quantity=delta,
            price=price,
            source=source,
        )

    def _close_if_done(self, repo: TraderRepository, order: Order, record: OrderRecord, outbox: Outbox) -> None:
        """A broker record that can no longer fill ends the order: CANCELLED, or REJECTED if refused unfilled."""
        if order.state.is_final:
            return
        now = self.clock.now()
        expired = now >= kst_datetime(order.trading_day, SESSION_CLOSE)
        done = record.remaining_quantity <= 0 or record.cancelled or record.rejected_quantity > 0 or expired
        if not done or order.filled_quantity >= order.quantity:
            return
        if record.rejected_quantity > 0 and order.filled_quantity == 0:
            order.reject_reason = "rejected by the broker"
            repo.transition(order, OrderStatus.REJECTED, now, "order.rejected", source="poll")
            self._event(outbox, "rejected", order, OrderRejectedV1, reason=order.reject_reason)
            return
        unfilled = order.quantity - order.filled_quantity
        if order.state is OrderStatus.NEW:
            repo.transition(order, OrderStatus.SUBMITTED, now, "order.adopted", source="poll")
        reason = "expired at the close" if expired and order.cancel_requested_at is None else "cancelled"
        repo.transition(order, OrderStatus.CANCELLED, now, "order.cancelled", reason=reason, unfilled=unfilled)
        self._event(outbox, "cancelled", order, OrderCancelledV1, cancelled_quantity=unfilled)
        log.info("trader.order_cancelled", order_id=str(order.id), reason=reason, unfilled=unfilled)

    # --- polling and recovery --------------------------------------------------------------------

    async def poll_open_orders(self, *, recovering: bool = False) -> int:
        """Bring every open order up to date with inquire-daily-ccld; returns how many were open.

        ``recovering`` (at start) also settles orders whose submission was in flight when the
        previous process died: adopted when the broker has them, else rejected.
        """
        async with self.sessionmaker() as session:
            open_orders = [o for o in await self.repo(session).open_orders() if o.id not in self._submitting]
        if not open_orders:
            return 0
        records: dict[date, tuple[OrderRecord, ...]] = {}
        for day in sorted({o.trading_day for o in open_orders}):
            records[day] = await self.broker.daily_orders(day)
        outbox = Outbox()
        now = self.clock.now()
        async with self.lock:
            async with write_transaction(self.sessionmaker) as session:
                repo = self.repo(session)
                known = await repo.known_broker_order_numbers()
                for stale in open_orders:
                    if stale.id in self._submitting:
                        continue
                    order = await repo.order(stale.id, for_update=True)
                    if order is None or order.state.is_final:
                        continue
                    day_records = records[order.trading_day]
                    if order.broker_order_no is None:
                        record = match_broker_order(order, day_records, known)
                        if record is None:
                            age = now - (order.submitted_at or order.created_at)
                            if recovering or age > UNKNOWN_OUTCOME_GRACE:
                                order.reject_reason = "submission outcome unknown and the broker has no such order"
                                repo.transition(
                                    order, OrderStatus.REJECTED, now, "order.rejected", reason=order.reject_reason
                                )
                                self._event(outbox, "rejected", order, OrderRejectedV1, reason=order.reject_reason)
                            continue
                        order.broker_order_no = normal_order_no(record.order_no)
                        order.broker_org_no = record.branch_no or order.broker_org_no
                        known.add(order.broker_order_no)
                        repo.transition(
                            order, OrderStatus.SUBMITTED, now, "order.adopted", broker_order_no=order.broker_order_no
                        )
                        self._event(outbox, "accepted", order, OrderAcceptedV1, broker_order_no=order.broker_order_no)
                        log.info("trader.order_adopted", order_id=str(order.id), broker_order_no=order.broker_order_no)
                    else:
                        record = next(
                            (r for r in day_records if normal_order_no(r.order_no) == order.broker_order_no), None
                        )
                        if record is None:
                            continue
                    await self._progress(repo, order, record.filled_quantity, record.filled_amount, "poll", outbox)
                    self._close_if_done(repo, order, record, outbox)
        await self._flush(outbox)
        return len(open_orders)

    # --- cancel ----------------------------------------------------------------------------------

    async def cancel(self, order_id: uuid.UUID, actor: str | None = None) -> Order:
        async with self.lock:
            async with write_transaction(self.sessionmaker) as session:
                repo = self.repo(session)
                order = await repo.order(order_id, for_update=True)
                if order is None:
                    raise NotFound(f"order {order_id} not found")
                if order.state.is_final:
                    raise Conflict(f"order {order_id} is already {order.status}")
                if order.broker_order_no is None:
                    raise Conflict(f"order {order_id} is not acknowledged by the broker yet; try again shortly")
                order.cancel_requested_at = self.clock.now()
                repo.audit("order.cancel_requested", order.cancel_requested_at, order=order, actor=actor)
        try:
            ack = await self.broker.cancel(order.broker_org_no or "", order.broker_order_no)
        except KisError as e:
            # Most often the order filled meanwhile; the poll below shows what it became.
            log.info("trader.cancel_refused", order_id=str(order.id), error=_broker_reason(e))
            await self.poll_open_orders()
            async with self.sessionmaker() as session:
                current = await self.repo(session).order(order.id)
            assert current is not None
            if current.state.is_final:
                return current
            raise Conflict(f"the broker refused the cancel: {_broker_reason(e)}") from e
        async with write_transaction(self.sessionmaker) as session:
            self.repo(session).audit(
                "order.cancel_accepted", self.clock.now(), order=order, cancel_order_no=ack.order_no
            )
        await self.poll_open_orders()
        async with self.sessionmaker() as session:
            current = await self.repo(session).order(order.id)
        assert current is not None
        return current

    # --- the account as the risk engine sees it ---------------------------------------------------

    async def risk_context(
        self, repo: TraderRepository, symbol: str, now: datetime, band: PriceBand, *, ignore_kill_switch: bool = False
    ) -> RiskContext:
        ledger = await repo.ledger(for_update=True)
        if ledger is None:
            raise Unavailable("the trader has not reconciled with the broker yet")
        positions = await repo.positions()
        for position in positions:
            if position.symbol == symbol and band.last > 0:
                position.last_price = band.last
        open_orders = await repo.open_orders()
        reserved = sum(
            buy_cost(o.quantity - o.filled_quantity, o.reserve_price) for o in open_orders if o.side == "buy"
        )
        held = next((p.quantity for p in positions if p.symbol == symbol), 0)
        roll_day(ledger, positions, now)
        current_equity = equity(ledger, positions)
        kill = await repo.kill_switch()
        return RiskContext(
            now=now,
            kill_switch_engaged=bool(kill and kill.engaged) and not ignore_kill_switch,
            cash_available=ledger.cash - reserved,
            held_quantity=held,
            pending_buy_quantity=sum(
                o.quantity - o.filled_quantity for o in open_orders if o.symbol == symbol and o.side == "buy"
            ),
            pending_sell_quantity=sum(
                o.quantity - o.filled_quantity for o in open_orders if o.symbol == symbol and o.side == "sell"
            ),
            gross_exposure=sum(p.quantity * p.last_price for p in positions),
            # Counted only when limited: one query fewer on the way to the broker otherwise.
            orders_last_minute=(
                await repo.orders_since(minute_ago(now)) if self.risk.limits.max_orders_per_minute is not None else 0
            ),
            equity=current_equity,
            day_start_equity=ledger.day_start_equity,
            peak_equity=ledger.peak_equity,
        )

    # --- events ----------------------------------------------------------------------------------

    def _event(self, outbox: Outbox, state: str, order: Order, kind: type[Any], **extra: Any) -> None:
        payload = kind(
            order_id=order.id,
            idempotency_key=order.idempotency_key,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            price=order.limit_price,
            **extra,
        )
        outbox.events.append((f"order.{state}.{order.symbol}", payload, order.idempotency_key))

    async def _flush(self, outbox: Outbox) -> None:
        """Publish and notify what a committed transaction produced; failures are logged, not raised."""
        for routing_key, payload, correlation in outbox.events:
            try:
                envelope = Envelope(producer="trader", correlation_id=correlation[:128], payload=payload)
                await self.bus.publish(routing_key, envelope)
            except Exception as e:
                log.warning("trader.publish_failed", routing_key=routing_key, error=type(e).__name__)
        for kind, message in outbox.notes:
            self.notifier.notify(kind, message)
        if outbox.engage_kill_switch is not None:
            await self.engage_kill_switch(f"drawdown limit: {outbox.engage_kill_switch}", actor="risk")

    async def engage_kill_switch(self, reason: str, actor: str) -> None:
        async with write_transaction(self.sessionmaker) as session:
            await self.repo(session).set_kill_switch(True, reason, actor, self.clock.now())
        log.warning("trader.kill_switch_engaged", reason=reason, actor=actor)
        self.notifier.notify("kill_switch", f"kill switch ENGAGED by {actor}: {reason}")


def roll_day(ledger: TraderAccount, positions: Sequence[Position], now: datetime) -> None:
    """Start a new trading day's loss baseline and keep the equity high-water mark."""
    current = equity(ledger, list(positions))
    today = to_kst(now).date()
    if ledger.day != today or ledger.day_start_equity is None:
        ledger.day = today
        ledger.day_start_equity = current
    ledger.peak_equity = max(ledger.peak_equity, current)


def match_broker_order(order: Order, records: Sequence[OrderRecord], known: set[str]) -> OrderRecord | None:
    """The broker's order that ``order`` became, when its acknowledgement was lost.

    Same symbol, side, quantity, division and price, accepted no earlier than a minute before
    our attempt, and not already claimed by another row; the earliest such order wins.
    """
    division = "01" if order.limit_price is None else "00"
    since = (order.submitted_at or order.created_at) - timedelta(minutes=1)
    candidates = [
        r
        for r in records
        if not r.original_order_no
        and normal_order_no(r.order_no) not in known
        and r.symbol == order.symbol
        and r.side == order.side
        and r.quantity == order.quantity
        and (r.order_division in ("", division))
        and (order.limit_price is None or r.price == order.limit_price)
        and (r.ordered_at is None or r.ordered_at >= since)
    ]
    candidates.sort(key=lambda r: (r.ordered_at is None, r.ordered_at, r.order_no))
    return candidates[0] if candidates else None


def _broker_reason(error: TradebotError) -> str:
    code = getattr(error, "msg_cd", None)
    return f"[{code}] {error.message}" if code else error.message
