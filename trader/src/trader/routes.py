"""HTTP routes of the trader: parse, call the service, map the result. No business logic here.

Roles come from the API gateway in ``X-Tradebot-Role`` (and the caller's name in
``X-Tradebot-User``); the trader listens only where the gateway can reach it and trusts them.
The kill switch and reconciliation need ``admin``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from common import logbuffer
from common.contracts import Symbol
from common.db import SessionDep
from common.errors import Forbidden, InvalidInput, NotFound, Unauthorized

from .models import OrderStatus
from .repository import TraderRepository
from .schemas import (
    EventView,
    ExecuteRequest,
    ExecutionResult,
    FillView,
    HistoryPage,
    KillSwitchRequest,
    KillSwitchView,
    LogEvent,
    LogPage,
    OrderDetail,
    OrderRequestBody,
    OrderView,
    PerformanceView,
    PnlView,
    PositionView,
    ReconciliationView,
    TraderStatus,
)
from .service import TraderService

ROLE_HEADER = "X-Tradebot-Role"
USER_HEADER = "X-Tradebot-User"
ROLES = ("viewer", "trader", "admin")


def trader_service(request: Request) -> TraderService:
    service: TraderService = request.app.state.trader
    return service


ServiceDep = Annotated[TraderService, Depends(trader_service)]


def _actor(role: str | None, user: str | None) -> str:
    # The gateway sends its principal's subject, e.g. "user:admin" or "key:ci-bot".
    name = user if user and len(user) <= 64 and all(c.isalnum() or c in "-_.@:" for c in user) else "anonymous"
    return f"{role or 'none'}:{name}"


def require_admin(
    role: Annotated[str | None, Header(alias=ROLE_HEADER)] = None,
    user: Annotated[str | None, Header(alias=USER_HEADER)] = None,
) -> str:
    """The actor, when the gateway vouched for the ``admin`` role."""
    if role is None:
        raise Unauthorized(f"this route needs the admin role ({ROLE_HEADER} set by the gateway)")
    if role.strip().lower() != "admin":
        raise Forbidden("this route needs the admin role")
    return _actor("admin", user)


def caller(
    role: Annotated[str | None, Header(alias=ROLE_HEADER)] = None,
    user: Annotated[str | None, Header(alias=USER_HEADER)] = None,
) -> str:
    clean = role.strip().lower() if role else None
    return _actor(clean if clean in ROLES else None, user)


AdminDep = Annotated[str, Depends(require_admin)]
CallerDep = Annotated[str, Depends(caller)]

router = APIRouter(prefix="/trade", tags=["trade"])


@router.post("/execute", response_model=ExecutionResult, summary="Execute a decision or a manual instruction")
async def execute(body: ExecuteRequest, service: ServiceDep) -> ExecutionResult:
    return await service.execute(body)


def _key(body: OrderRequestBody, header: str | None) -> str | None:
    if header and body.idempotency_key and header != body.idempotency_key:
        raise InvalidInput("Idempotency-Key header and body idempotency_key differ")
    return body.idempotency_key or header


@router.post("/buy", response_model=OrderView, summary="Buy: a limit order at `price`, or market without one")
async def buy(
    body: OrderRequestBody,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> OrderView:
    order, _ = await service.place("buy", body.symbol, body.quantity, body.price, _key(body, idempotency_key))
    return OrderView.of(order)


@router.post("/sell", response_model=OrderView, summary="Sell: a limit order at `price`, or market without one")
async def sell(
    body: OrderRequestBody,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)] = None,
) -> OrderView:
    order, _ = await service.place("sell", body.symbol, body.quantity, body.price, _key(body, idempotency_key))
    return OrderView.of(order)


@router.get("/status/{order_id}", response_model=OrderDetail, summary="An order with its fills and audit trail")
async def status(order_id: uuid.UUID, service: ServiceDep, session: SessionDep) -> OrderDetail:
    repo = TraderRepository(session, service.account)
    order = await repo.order(order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return OrderDetail(
        order=OrderView.of(order),
        fills=[FillView.of(f) for f in await repo.fills(order_id)],
        events=[EventView.of(e) for e in await repo.events(order_id)],
    )


@router.post("/orders/{order_id}/cancel", response_model=OrderView, summary="Cancel what remains of an open order")
async def cancel(order_id: uuid.UUID, service: ServiceDep, actor: CallerDep) -> OrderView:
    return OrderView.of(await service.cancel(order_id, actor))


@router.get("/history", response_model=HistoryPage, summary="Orders, newest first, with filters and paging")
async def history(
    service: ServiceDep,
    session: SessionDep,
    symbol: Annotated[Symbol | None, Query()] = None,
    side: Annotated[str | None, Query(pattern="^(buy|sell)$")] = None,
    status: Annotated[list[OrderStatus] | None, Query()] = None,
    since: Annotated[datetime | None, Query(description="created at or after (aware ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="created before (aware ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> HistoryPage:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (e.g. 2024-03-04T09:00:00+09:00)")
    items, total = await TraderRepository(session, service.account).history(
        symbol=symbol,
        side=side,
        status=[s.value for s in status or []],
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return HistoryPage(items=[OrderView.of(o) for o in items], total=total, limit=limit, offset=offset)


@router.get("/positions", response_model=list[PositionView], summary="Positions held (average cost, P&L)")
async def positions(service: ServiceDep, session: SessionDep) -> list[PositionView]:
    held = await TraderRepository(session, service.account).positions(held_only=True)
    return [PositionView.of(p) for p in held]


@router.get("/pnl", response_model=PnlView, summary="Cash, equity, realised and unrealised P&L, drawdown")
async def pnl(service: ServiceDep, session: SessionDep) -> PnlView:
    return await service.pnl(session)


@router.get("/kill-switch", response_model=KillSwitchView, summary="Whether new orders are halted")
async def kill_switch(service: ServiceDep) -> KillSwitchView:
    return await service.kill_switch()


@router.post("/kill-switch", response_model=KillSwitchView, summary="Engage or release the kill switch (admin)")
async def set_kill_switch(body: KillSwitchRequest, service: ServiceDep, actor: AdminDep) -> KillSwitchView:
    return await service.set_kill_switch(body, actor)


@router.post("/reconcile", response_model=ReconciliationView, summary="Reconcile with the broker now (admin)")
async def reconcile(service: ServiceDep, actor: AdminDep) -> ReconciliationView:
    service.require_active()
    assert service.reconciler is not None
    report = await service.reconciler.run()
    return ReconciliationView(
        at=service.clock.now(),
        broker_cash=report.broker_cash,
        ledger_cash=report.ledger_cash,
        differences=report.differences,
        adopted=report.adopted,
    )


@router.get("/reconciliation", response_model=ReconciliationView, summary="The latest reconciliation")
async def reconciliation(service: ServiceDep, session: SessionDep) -> ReconciliationView:
    snapshot = await TraderRepository(session, service.account).latest_snapshot()
    if snapshot is None:
        return ReconciliationView(at=None, broker_cash=None, ledger_cash=None, differences=[])
    return ReconciliationView(
        at=snapshot.at,
        broker_cash=snapshot.broker_cash,
        ledger_cash=snapshot.ledger_cash,
        differences=snapshot.differences,
    )


@router.get("/instance", response_model=TraderStatus, summary="Whether this replica is the active writer")
async def instance(service: ServiceDep) -> TraderStatus:
    return TraderStatus(
        active=service.active,
        broker_configured=service.broker is not None,
        instance=service.instance,
        account=service.account,
    )


# The dashboard's reads, forwarded by the gateway as /api/v1/dashboard/performance and /logs.
dashboard_router = APIRouter(tags=["dashboard"])


@dashboard_router.get(
    "/performance", response_model=PerformanceView, summary="Equity curve vs buy & hold, drawdown, key metrics"
)
async def performance_view(
    service: ServiceDep,
    session: SessionDep,
    symbols: Annotated[
        list[Symbol] | None, Query(max_length=50, description="benchmark symbols (default: held or traded)")
    ] = None,
    points: Annotated[int, Query(ge=2, le=5_000, description="at most this many curve points")] = 500,
) -> PerformanceView:
    return await service.performance(session, symbols or [], points)


@dashboard_router.get("/logs", response_model=LogPage, summary="Recent log events of this process (a live tail)")
async def logs(
    after: Annotated[int, Query(ge=0, description="only events after this id")] = 0,
    level: Annotated[str | None, Query(pattern="^(debug|info|warning|error|critical)$")] = None,
    service: Annotated[list[str] | None, Query(max_length=20, description="service or component names")] = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 200,
) -> LogPage:
    events = logbuffer.buffer.recent(after=after, min_level=level, services=service or [], limit=limit)
    return LogPage(events=[LogEvent.model_validate(e) for e in events], last_id=events[-1]["id"] if events else after)
