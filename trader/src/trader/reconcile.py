"""Reconciliation with the broker: open orders first (inquire-daily-ccld), then cash and
holdings (inquire-balance) against the ledger.

The first run initialises the ledger from the broker. Later runs compare: every difference is
logged, recorded in ``account_snapshots`` and the audit log, and notified. A symbol with open
orders (and the cash while any order is open) is not compared — fills may be in flight — and
when nothing is in flight the broker's figures are adopted (``reconcile_adopt_broker``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog

from common.kis import Balance

from .ledger import equity
from .models import AccountSnapshot, Position, TraderAccount
from .orders import OrderManager, roll_day
from .repository import write_transaction

log = structlog.get_logger(__name__)


@dataclass
class ReconciliationReport:
    initialised: bool
    broker_cash: int
    ledger_cash: int
    differences: list[dict[str, Any]] = field(default_factory=list)
    adopted: bool = False
    open_orders: int = 0


class Reconciler:
    def __init__(self, manager: OrderManager, *, adopt_broker: bool) -> None:
        self.manager = manager
        self.adopt_broker = adopt_broker
        self.last: ReconciliationReport | None = None

    async def run(self, *, recovering: bool = False) -> ReconciliationReport:
        manager = self.manager
        await manager.poll_open_orders(recovering=recovering)
        balance = await manager.broker.balance()
        now = manager.clock.now()
        async with manager.lock:
            async with write_transaction(manager.sessionmaker) as session:
                repo = manager.repo(session)
                ledger = await repo.ledger(for_update=True)
                open_orders = await repo.open_orders()
                if ledger is None:
                    report = await self._initialise(repo.session, balance, now)
                else:
                    positions = {p.symbol: p for p in await repo.positions()}
                    busy = {o.symbol for o in open_orders}
                    report = ReconciliationReport(
                        initialised=False, broker_cash=balance.summary.cash, ledger_cash=ledger.cash
                    )
                    report.differences = compare(ledger, positions, balance, busy, cash_busy=bool(open_orders))
                    if report.differences and self.adopt_broker:
                        adopt(
                            ledger, positions, balance, busy, cash_busy=bool(open_orders), repo_add=session.add, now=now
                        )
                        report.adopted = True
                    for holding in balance.holdings:
                        position = positions.get(holding.symbol)
                        if position is not None and holding.price > 0:
                            position.last_price = holding.price
                    roll_day(ledger, list(positions.values()), now)
                    ledger.updated_at = now
                report.open_orders = len(open_orders)
                repo.add_snapshot(
                    AccountSnapshot(
                        id=uuid.uuid4(),
                        account=manager.account,
                        at=now,
                        broker_cash=balance.summary.cash,
                        ledger_cash=report.ledger_cash,
                        holdings={
                            h.symbol: {"quantity": h.quantity, "cost": h.purchase_amount, "price": h.price}
                            for h in balance.holdings
                        },
                        differences=report.differences,
                        difference_count=len(report.differences),
                    )
                )
                if report.differences:
                    repo.audit("reconciliation.difference", now, differences=report.differences, adopted=report.adopted)
        if report.differences:
            log.warning("trader.reconciliation_difference", differences=report.differences, adopted=report.adopted)
            summary = ", ".join(
                f"{d['field']} {d.get('symbol') or ''} ledger={d['ledger']} broker={d['broker']}"
                for d in report.differences
            )
            manager.notifier.notify(
                "reconciliation", f"reconciliation found {len(report.differences)} difference(s): {summary}"
            )
        else:
            log.info("trader.reconciled", open_orders=report.open_orders, initialised=report.initialised)
        self.last = report
        return report

    async def _initialise(self, session: Any, balance: Balance, now: Any) -> ReconciliationReport:
        manager = self.manager
        positions = [
            Position(
                account=manager.account,
                symbol=h.symbol,
                quantity=h.quantity,
                cost=h.purchase_amount,
                realised_pnl=0,
                last_price=h.price,
                updated_at=now,
                basis_cost=h.purchase_amount,
                basis_quantity=h.quantity,
            )
            for h in balance.holdings
        ]
        ledger = TraderAccount(
            account=manager.account,
            cash=balance.summary.cash,
            realised_pnl=0,
            fees_paid=0,
            peak_equity=0,
            day=None,
            day_start_equity=None,
            initialised_at=now,
            updated_at=now,
        )
        session.add(ledger)
        for position in positions:
            session.add(position)
        roll_day(ledger, positions, now)
        manager.repo(session).audit(
            "ledger.initialised", now, cash=ledger.cash, positions=len(positions), equity=equity(ledger, positions)
        )
        return ReconciliationReport(initialised=True, broker_cash=balance.summary.cash, ledger_cash=ledger.cash)


def compare(
    ledger: TraderAccount, positions: dict[str, Position], balance: Balance, busy: set[str], *, cash_busy: bool
) -> list[dict[str, Any]]:
    """Differences between the ledger and the broker, skipping what open orders may still change."""
    differences: list[dict[str, Any]] = []
    if not cash_busy and ledger.cash != balance.summary.cash:
        differences.append({"field": "cash", "symbol": None, "ledger": ledger.cash, "broker": balance.summary.cash})
    holdings = {h.symbol: h for h in balance.holdings}
    for symbol in sorted(set(holdings) | set(positions)):
        if symbol in busy:
            continue
        held = holdings.get(symbol)
        position = positions.get(symbol)
        broker_qty, broker_cost = (held.quantity, held.purchase_amount) if held else (0, 0)
        ledger_qty, ledger_cost = (position.quantity, position.cost) if position else (0, 0)
        if broker_qty != ledger_qty:
            differences.append({"field": "quantity", "symbol": symbol, "ledger": ledger_qty, "broker": broker_qty})
        if broker_cost != ledger_cost:
            differences.append({"field": "cost", "symbol": symbol, "ledger": ledger_cost, "broker": broker_cost})
    return differences


def adopt(
    ledger: TraderAccount,
    positions: dict[str, Position],
    balance: Balance,
    busy: set[str],
    *,
    cash_busy: bool,
    repo_add: Any,
    now: Any,
) -> None:
    """Take the broker's figures for everything not in flight."""
    if not cash_busy:
        ledger.cash = balance.summary.cash
    holdings = {h.symbol: h for h in balance.holdings}
    for symbol in set(holdings) | set(positions):
        if symbol in busy:
            continue
        held = holdings.get(symbol)
        position = positions.get(symbol)
        if position is None:
            assert held is not None
            position = Position(
                account=ledger.account,
                symbol=symbol,
                quantity=0,
                cost=0,
                realised_pnl=0,
                last_price=held.price,
                updated_at=now,
            )
            repo_add(position)
            positions[symbol] = position
        position.quantity = held.quantity if held else 0
        position.cost = held.purchase_amount if held else 0
        position.basis_cost, position.basis_quantity = position.cost, position.quantity
        position.updated_at = now
