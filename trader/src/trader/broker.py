"""The broker port the trader talks to, and its KIS adapter.

The port speaks the KIS client's typed results (``OrderAck``, ``OrderRecord``, ``Balance``):
there is one broker protocol in this project, and the simulator implements the same wire, so
the real adapter is what runs in tests too. Errors are the client's taxonomy
(``OrderOutcomeUnknown``, ``KisRejected``, ``MarketClosed``…).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

import structlog

from common.kis import Balance, ExecutionNotice, KisClient, KisSettings, OrderAck, OrderRecord
from common.krx import price_limits

log = structlog.get_logger(__name__)

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class PriceBand:
    """What the risk engine needs of a symbol's day: base price, daily limits and the last trade."""

    base: int
    lower: int
    upper: int
    last: int


class Broker(Protocol):
    """What the trader needs from a broker account."""

    @property
    def account_key(self) -> str:
        """A stable, non-secret identifier of the account (a hash, never the number)."""
        ...

    async def place(self, side: Side, symbol: str, quantity: int, price: int | None) -> OrderAck:
        """A day order: limit at ``price``, or market when ``price`` is None."""
        ...

    async def cancel(self, org_no: str, order_no: str) -> OrderAck: ...

    async def daily_orders(self, day: date) -> tuple[OrderRecord, ...]: ...

    async def balance(self) -> Balance: ...

    async def price_band(self, symbol: str, day: date) -> PriceBand: ...

    def notices(self) -> AsyncIterator[ExecutionNotice]:
        """Order and fill notices until the iterator is closed (reconnecting underneath)."""
        ...

    async def aclose(self) -> None: ...


def account_key(settings: KisSettings) -> str:
    """sha256 of domain, account and product code, shortened: identifies without revealing."""
    raw = f"{settings.domain.value}:{settings.cano.get_secret_value()}:{settings.acnt_prdt_cd.get_secret_value()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class KisBroker:
    """``Broker`` on the KIS Open API (or the simulator, which speaks the same protocol)."""

    def __init__(self, client: KisClient) -> None:
        self.client = client
        self._account_key = account_key(client.settings)
        self._bands: dict[tuple[str, date], PriceBand] = {}

    @property
    def account_key(self) -> str:
        return self._account_key

    async def place(self, side: Side, symbol: str, quantity: int, price: int | None) -> OrderAck:
        if price is None:
            return await self.client.place_order(side, symbol, quantity, 0, "01")
        return await self.client.place_order(side, symbol, quantity, price, "00")

    async def cancel(self, org_no: str, order_no: str) -> OrderAck:
        return await self.client.cancel_order(org_no, order_no)

    async def daily_orders(self, day: date) -> tuple[OrderRecord, ...]:
        return (await self.client.get_daily_orders(day, day)).orders

    async def balance(self) -> Balance:
        return await self.client.get_balance()

    async def price_band(self, symbol: str, day: date) -> PriceBand:
        # Base price and limits are fixed for the day: one quote per symbol and day is enough
        # (paper accounts get one REST call a second).
        cached = self._bands.get((symbol, day))
        if cached is not None:
            return cached
        quote = await self.client.get_quote(symbol)
        lower, upper = quote.lower_limit, quote.upper_limit
        if not (lower and upper) and quote.base_price:
            lower, upper = price_limits(quote.base_price, day)
        band = PriceBand(base=quote.base_price, lower=lower, upper=upper, last=quote.price)
        if band.base > 0:
            self._bands[(symbol, day)] = band
        return band

    async def notices(self) -> AsyncIterator[ExecutionNotice]:
        async with self.client.websocket() as ws:
            await ws.subscribe_notices()
            async for event in ws:
                if isinstance(event, ExecutionNotice):
                    yield event
                else:
                    log.info("trader.notice_stream_event", event_type=type(event).__name__)

    async def aclose(self) -> None:
        await self.client.aclose()
