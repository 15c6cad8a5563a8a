"""Accounts, orders and matching of the simulated broker, with KRX rules.

Orders match against the market's tick path: a tick at price p with volume v can fill buy
orders that are market orders or limits ≥ p, and sell orders that are market orders or limits
≤ p, at p, in time priority, up to v shares per side — so an order large against the tick
volume fills partially over several ticks. An order only sees ticks after the one during which
it was accepted. Day orders expire at the 15:30 close.

Cash is never negative: a buy reserves qty × limit price (the upper limit for a market order)
plus commission, and every fill costs at most what it reserved. Commission (0.015%) and the sell
tax by date come from ``common.krx`` and are computed on each order's cumulative filled value.
Settlement is immediate (no D+2 cash lag).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

import structlog

from common.clock import kst_datetime, to_kst
from common.kis.sim import messages as m
from common.kis.sim.market import Market, Quote
from common.kis.sim.settings import Domain, SimAccount
from common.krx import SESSION_CLOSE, SESSION_OPEN, commission, cost_after_sale, is_on_tick, sell_tax

log = structlog.get_logger(__name__)

MARKET_ORDER = "01"
LIMIT_ORDER = "00"
ORDER_DIVISIONS = {LIMIT_ORDER: "지정가", MARKET_ORDER: "시장가"}
ORG_NO = {"real": "06010", "paper": "00950"}


class Side(StrEnum):
    SELL = "01"
    BUY = "02"

    @property
    def label(self) -> str:
        return "매도" if self is Side.SELL else "매수"


class Revision(StrEnum):
    """RCTF_CLS: what an order record is."""

    NEW = "0"
    MODIFY = "1"
    CANCEL = "2"


@dataclass(eq=False)
class Order:
    """One order record (a new order, a modification or a cancellation), as inquire-daily-ccld lists it."""

    odno: str
    orgno: str
    account: AccountState
    code: str
    name: str
    side: Side
    division: str
    qty: int
    price: int
    accepted_at: datetime
    day: date
    first_tick: int
    revision: Revision = Revision.NEW
    original_odno: str = ""
    filled_qty: int = 0
    filled_value: int = 0
    withdrawn_qty: int = 0  # taken away by a later modification or cancellation
    reserved: int = 0  # cash still held for the unfilled part of a buy
    commission: int = 0
    tax: int = 0
    expired: bool = False

    @property
    def remaining(self) -> int:
        if self.revision is Revision.CANCEL or self.expired:
            return 0
        return self.qty - self.filled_qty - self.withdrawn_qty

    @property
    def unfilled(self) -> int:
        """rmn_qty of the daily order list: what was neither filled nor withdrawn."""
        if self.revision is Revision.CANCEL:
            return 0
        return self.qty - self.filled_qty - self.withdrawn_qty

    @property
    def average_price(self) -> float:
        return self.filled_value / self.filled_qty if self.filled_qty else 0.0

    @property
    def open(self) -> bool:
        return self.remaining > 0

    def accepts(self, price: int) -> bool:
        if self.division == MARKET_ORDER:
            return True
        return price <= self.price if self.side is Side.BUY else price >= self.price


@dataclass(frozen=True, slots=True)
class Fill:
    order: Order
    qty: int
    price: int
    at: datetime

    @property
    def gross(self) -> int:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Notice:
    """An order/fill event for the H0STCNI0/H0STCNI9 stream (kis-api.md §5.8)."""

    account: AccountState
    order: Order
    filled: bool  # CNTG_YN 2 (fill) vs 1 (acceptance)
    qty: int
    price: int
    at: datetime


@dataclass
class Position:
    code: str
    name: str
    qty: int = 0
    cost: int = 0  # purchase amount of the shares held (average-cost basis, fees excluded)
    basis_cost: int = 0  # cost and quantity after the last buy: sales scale them
    basis_qty: int = 0

    @property
    def average_price(self) -> float:
        return self.cost / self.qty if self.qty else 0.0


@dataclass(eq=False)
class AccountState:
    """Cash, holdings and order history of one app key's account."""

    config: SimAccount
    cash: int
    positions: dict[str, Position] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)

    @property
    def domain(self) -> Domain:
        return self.config.domain

    @property
    def reserved(self) -> int:
        return sum(order.reserved for order in self.orders if order.open)

    @property
    def orderable_cash(self) -> int:
        return self.cash - self.reserved

    def sellable(self, code: str) -> int:
        position = self.positions.get(code)
        held = position.qty if position else 0
        pending = sum(o.remaining for o in self.orders if o.open and o.code == code and o.side is Side.SELL)
        return held - pending

    def fills_on(self, day: date) -> list[Fill]:
        return [fill for fill in self.fills if to_kst(fill.at).date() == day]

    def find_order(self, odno: str) -> Order | None:
        wanted = odno.strip().lstrip("0")
        for order in self.orders:
            if order.odno.lstrip("0") == wanted:
                return order
        return None


def buy_reservation(qty: int, unit_price: int) -> int:
    gross = qty * unit_price
    return gross + commission(gross)


def max_buy_qty(cash: int, unit_price: int) -> int:
    """The largest quantity whose cost with commission fits in ``cash``."""
    if unit_price <= 0 or cash <= 0:
        return 0
    qty = cash // unit_price
    while qty > 0 and buy_reservation(qty, unit_price) > cash:
        qty -= 1
    return qty


class Exchange:
    """The simulated broker: accounts by app key, order entry, matching, notices."""

    def __init__(self, market: Market, accounts: Iterable[SimAccount]) -> None:
        self.market = market
        self.accounts: dict[str, AccountState] = {a.appkey: AccountState(config=a, cash=a.cash) for a in accounts}
        self._order_numbers = {"real": itertools.count(117_001), "paper": itertools.count(30_001)}
        self._cursors: dict[tuple[str, date], int] = {}
        self._listeners: list[Callable[[Notice], None]] = []

    # -- lookup -------------------------------------------------------------------------------

    def account(self, appkey: str) -> AccountState:
        return self.accounts[appkey]

    def account_by_number(self, cano: str, product: str = "01") -> AccountState | None:
        for account in self.accounts.values():
            if account.config.cano == cano and account.config.acnt_prdt_cd == product:
                return account
        return None

    def subscribe(self, listener: Callable[[Notice], None]) -> None:
        self._listeners.append(listener)

    def _notify(self, notice: Notice) -> None:
        for listener in self._listeners:
            listener(notice)

    # -- order entry ----------------------------------------------------------------------------

    def _trading_quote(self, account: AccountState, code: str, now: datetime) -> Quote:
        """The quote of a symbol that can be traded right now, or the refusal that says why not."""
        quote = self.market.quote(code, now)
        if quote is None:
            raise m.KisReject(m.UNKNOWN_SYMBOL)
        local = to_kst(now)
        if not self.market.is_trading_day(local.date()):
            raise m.KisReject(m.market_closed(account.domain))
        if not SESSION_OPEN <= local.time() < SESSION_CLOSE:
            raise m.KisReject(m.outside_hours(account.domain))
        if quote.day != local.date():
            raise m.KisReject(m.trading_halted(account.domain))
        return quote

    def _check_price(self, account: AccountState, quote: Quote, division: str, price: int) -> int:
        """The unit price used for reservation; validates tick grid and daily limits of a limit order."""
        lower, upper = quote.limits
        if division == MARKET_ORDER:
            return upper
        if not is_on_tick(price):
            raise m.KisReject(m.off_tick(account.domain))
        if not lower <= price <= upper:
            raise m.KisReject(m.outside_limits(account.domain))
        return price

    def _new_order_number(self, domain: Domain) -> str:
        return f"{next(self._order_numbers[domain]):010d}"

    def place(
        self, account: AccountState, code: str, side: Side, division: str, qty: int, price: int, now: datetime
    ) -> Order:
        """Accept a cash order or raise ``KisReject``; validated fields come in already parsed."""
        self.advance_to(now)
        quote = self._trading_quote(account, code, now)
        unit = self._check_price(account, quote, division, price)
        reserved = 0
        if side is Side.BUY:
            reserved = buy_reservation(qty, unit)
            if reserved > account.orderable_cash:
                raise m.KisReject(m.insufficient_cash(account.domain))
        elif account.sellable(code) < qty:
            raise m.KisReject(m.insufficient_shares(account.domain))
        order = Order(
            odno=self._new_order_number(account.domain),
            orgno=ORG_NO[account.domain],
            account=account,
            code=code,
            name=quote.name,
            side=side,
            division=division,
            qty=qty,
            price=price if division == LIMIT_ORDER else 0,
            accepted_at=now,
            day=quote.day,
            first_tick=quote.index + 1,
            reserved=reserved,
        )
        account.orders.append(order)
        log.info(
            "kis_sim.order_accepted",
            domain=account.domain,
            odno=order.odno,
            code=code,
            side=side.name.lower(),
            division=division,
            qty=qty,
            price=order.price,
        )
        self._notify(Notice(account=account, order=order, filled=False, qty=qty, price=order.price, at=now))
        return order

    def revise(
        self,
        account: AccountState,
        original_odno: str,
        revision: Revision,
        division: str,
        qty: int | None,
        price: int,
        now: datetime,
    ) -> Order:
        """Modify (new price/division for some or all of the rest) or cancel an open order.

        ``qty`` None means the whole remaining quantity (QTY_ALL_ORD_YN=Y).
        """
        self.advance_to(now)
        original = account.find_order(original_odno)
        if original is None or original.revision is Revision.CANCEL:
            raise m.KisReject(m.ORIGINAL_NOT_FOUND)
        quote = self._trading_quote(account, original.code, now)
        amount = original.remaining if qty is None else qty
        if amount <= 0 or amount > original.remaining:
            raise m.KisReject(m.REVISE_QTY_TOO_LARGE)
        record = Order(
            odno=self._new_order_number(account.domain),
            orgno=original.orgno,
            account=account,
            code=original.code,
            name=original.name,
            side=original.side,
            division=original.division,
            qty=amount,
            price=original.price,
            accepted_at=now,
            day=quote.day,
            first_tick=quote.index + 1,
            revision=revision,
            original_odno=original.odno,
        )
        if revision is Revision.MODIFY:
            unit = self._check_price(account, quote, division, price)
            record.division = division
            record.price = price if division == LIMIT_ORDER else 0
            if original.side is Side.BUY:
                # The modified part moves its reservation to the new order; more cash only if the price rose.
                released = original.reserved - self._reservation_for(original, original.remaining - amount)
                needed = buy_reservation(amount, unit)
                if needed - released > account.orderable_cash:
                    raise m.KisReject(m.insufficient_cash(account.domain))
                record.reserved = needed
        original.withdrawn_qty += amount
        original.reserved = self._reservation_for(original, original.remaining)
        account.orders.append(record)
        log.info(
            "kis_sim.order_revised",
            domain=account.domain,
            odno=record.odno,
            original=original.odno,
            revision=revision.name.lower(),
            qty=amount,
        )
        self._notify(Notice(account=account, order=record, filled=False, qty=amount, price=record.price, at=now))
        return record

    def _reservation_for(self, order: Order, qty: int) -> int:
        if order.side is Side.SELL or qty <= 0:
            return 0
        unit = order.price
        if order.division == MARKET_ORDER:
            quote = self.market.quote(order.code, order.accepted_at)
            unit = quote.limits[1] if quote else order.price
        return buy_reservation(qty, unit)

    # -- matching ---------------------------------------------------------------------------------

    def advance_to(self, now: datetime) -> None:
        """Match every open order against the ticks that happened up to ``now``; expire closed days."""
        books: dict[tuple[str, date], list[Order]] = {}
        for account in self.accounts.values():
            for order in account.orders:
                if order.open:
                    books.setdefault((order.code, order.day), []).append(order)
        for (code, day), orders in books.items():
            self._match(code, day, orders, now)
            if now >= kst_datetime(day, SESSION_CLOSE):
                for order in orders:
                    if order.open:
                        order.expired = True
                        order.reserved = 0
                        log.info("kis_sim.order_expired", odno=order.odno, unfilled=order.unfilled)

    def _match(self, code: str, day: date, orders: list[Order], now: datetime) -> None:
        path = self.market.path(code, day)
        if path is None:
            return
        last = self.market.tick_index(path, now)
        start = max(min(order.first_tick for order in orders), self._cursors.get((code, day), -1) + 1)
        orders.sort(key=lambda o: (o.accepted_at, o.odno))
        for index in range(start, last + 1):
            volume = path.volumes[index]
            if volume <= 0:
                continue
            price = path.prices[index]
            liquidity = {Side.BUY: volume, Side.SELL: volume}
            for order in orders:
                if not order.open or order.first_tick > index or not order.accepts(price):
                    continue
                qty = min(order.remaining, liquidity[order.side])
                if qty <= 0:
                    continue
                liquidity[order.side] -= qty
                at = kst_datetime(day, path.tick_time(index))
                self._fill(order, qty, price, at)
        self._cursors[(code, day)] = last

    def _fill(self, order: Order, qty: int, price: int, at: datetime) -> None:
        account = order.account
        gross = qty * price
        order.filled_qty += qty
        order.filled_value += gross
        fee = commission(order.filled_value) - order.commission
        order.commission += fee
        position = account.positions.setdefault(order.code, Position(code=order.code, name=order.name))
        if order.side is Side.BUY:
            account.cash -= gross + fee
            order.reserved = self._reservation_for(order, order.remaining)
            position.qty += qty
            position.cost += gross
            position.basis_cost, position.basis_qty = position.cost, position.qty
        else:
            tax = sell_tax(order.filled_value, to_kst(at).date()) - order.tax
            order.tax += tax
            account.cash += gross - fee - tax
            if position.basis_qty < position.qty:  # seeded holdings: their own figures are the basis
                position.basis_cost, position.basis_qty = position.cost, position.qty
            position.qty -= qty
            position.cost = cost_after_sale(position.basis_cost, position.basis_qty, position.qty)
        fill = Fill(order=order, qty=qty, price=price, at=at)
        account.fills.append(fill)
        log.info(
            "kis_sim.order_filled",
            domain=account.domain,
            odno=order.odno,
            code=order.code,
            qty=qty,
            price=price,
            remaining=order.remaining,
        )
        self._notify(Notice(account=account, order=order, filled=True, qty=qty, price=price, at=at))

    # -- queries ----------------------------------------------------------------------------------

    def held_positions(self, account: AccountState, today: date) -> list[Position]:
        """Holdings, plus positions closed today (they stay listed with qty 0 until settlement)."""
        traded_today = {fill.order.code for fill in account.fills_on(today)}
        return [p for code, p in sorted(account.positions.items()) if p.qty > 0 or code in traded_today]

    def orders_between(self, account: AccountState, start: date, end: date) -> list[Order]:
        return [order for order in account.orders if start <= order.day <= end]

