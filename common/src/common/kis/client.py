"""``KisClient``: the domestic-stock endpoints of kis-api.md §4 with typed results.

One client per appkey/domain. It shares its access token through a ``TokenStore`` (file or
``kis_tokens`` table) and its rate limit with every other client of the same appkey in the
process. Errors are ``common.errors`` types (see ``common.kis.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from types import TracebackType
from typing import Any, Literal

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from common.clock import Clock, to_kst
from common.kis.errors import KisInvalidInput, KisOperational
from common.kis.models import (
    Balance,
    BalanceSummary,
    BookLevel,
    BuyingPower,
    DailyBar,
    DailyOrders,
    DailyOrdersSummary,
    Holding,
    MinuteBar,
    OrderAck,
    OrderBookSnapshot,
    OrderRecord,
    Quote,
    Side,
    kst_datetime_of,
    parse_int,
    parse_time,
)
from common.kis.ratelimit import TokenBucket
from common.kis.rest import KisResponse, KisRest
from common.kis.settings import KisSettings
from common.kis.tokens import DbTokenStore, FileTokenStore, TokenStore
from common.kis.websocket import KisWebSocket
from common.logging import redactor

log = structlog.get_logger(__name__)

QUOTATIONS = "/uapi/domestic-stock/v1/quotations"
TRADING = "/uapi/domestic-stock/v1/trading"

DAILY_ROWS_PER_CALL = 100
MINUTE_BARS_PER_CALL = 30
CCLD_RECENT_DAYS = 92  # "within 3 months" of inquire-daily-ccld (kis-api.md §4.8)

# Real-domain tr_ids; paper ones follow by the §3.6 rule (KisSettings.tr_id).
_TR_IDS: dict[str, dict[str, str]] = {
    "new": {
        "buy": "TTTC0012U",
        "sell": "TTTC0011U",
        "rvsecncl": "TTTC0013U",
        "ccld_recent": "TTTC0081R",
        "ccld_old": "CTSC9215R",
    },
    "old": {
        "buy": "TTTC0802U",
        "sell": "TTTC0801U",
        "rvsecncl": "TTTC0803U",
        "ccld_recent": "TTTC8001R",
        "ccld_old": "CTSC9115R",
    },
}
BALANCE_TR = "TTTC8434R"
PSBL_ORDER_TR = "TTTC8908R"
PRICE_TR = "FHKST01010100"
ORDER_BOOK_TR = "FHKST01010200"
DAILY_CHART_TR = "FHKST03010100"
MINUTE_CHART_TR = "FHKST03010200"

OrderDivision = Literal[
    "00", "01", "02", "03", "04", "05", "06", "07", "11", "12", "13", "14", "15", "16", "21", "22", "23", "24"
]
MARKET_PRICE_DIVISIONS = frozenset({"01", "03", "04", "05", "06", "13", "14", "15", "16"})


def _ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def _rows(value: Any) -> list[dict[str, Any]]:
    """A KIS list output without the empty ``{}`` padding elements (kis-api.md §4.2)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, dict) and any(str(v).strip() for v in row.values())]


class KisClient:
    """Async client of one KIS appkey on one domain (real or paper)."""

    def __init__(
        self,
        settings: KisSettings,
        *,
        http: httpx.AsyncClient | None = None,
        store: TokenStore | None = None,
        clock: Clock | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        # Whatever mode built these settings (environment, all-in-one, tests), logs never show them.
        redactor.add(settings.secrets())
        self.rest = KisRest(settings, http=http, store=store, clock=clock, limiter=limiter)
        self.clock = self.rest.clock

    @classmethod
    def from_settings(
        cls, settings: KisSettings, *, engine: AsyncEngine | None = None, clock: Clock | None = None
    ) -> KisClient:
        """The composition-root constructor: the token store chosen by ``settings.token_store``."""
        store: TokenStore
        if settings.token_store == "db":  # noqa: S105 — a store kind, not a secret
            if engine is None:
                raise KisOperational("KIS_TOKEN_STORE=db needs a database engine")
            store = DbTokenStore(engine)
        else:
            store = FileTokenStore(settings.token_cache_path)
        return cls(settings, store=store, clock=clock)

    def __repr__(self) -> str:
        return f"KisClient(domain={self.settings.domain.value!r}, rest_url={self.settings.rest_url!r})"

    async def __aenter__(self) -> KisClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.rest.aclose()

    # --- auth ---------------------------------------------------------------------------------

    async def access_token(self) -> str:
        return await self.rest.tokens.access_token()

    async def approval_key(self) -> str:
        return await self.rest.tokens.approval_key()

    async def revoke_token(self) -> None:
        await self.rest.tokens.revoke()

    async def hashkey(self, body: Mapping[str, str]) -> str:
        return await self.rest.hashkey(body)

    def websocket(self) -> KisWebSocket:
        """A WebSocket client on this appkey (one session per appkey at KIS)."""
        return KisWebSocket(self.settings, self.rest.tokens.approval_key, clock=self.clock)

    # --- helpers ------------------------------------------------------------------------------

    def _tr(self, name: str) -> str:
        return self.settings.tr_id(_TR_IDS[self.settings.order_tr_ids][name])

    def _account(self) -> dict[str, str]:
        settings = self.settings
        cano = settings.cano.get_secret_value()
        if not cano:
            raise KisOperational("KIS_CANO (account number) is not configured")
        return {"CANO": cano, "ACNT_PRDT_CD": settings.acnt_prdt_cd.get_secret_value()}

    def _today(self) -> date:
        return to_kst(self.clock.now()).date()

    async def _get(self, path: str, tr_id: str, params: Mapping[str, str]) -> KisResponse:
        return await self.rest.request("GET", path, tr_id=tr_id, params=params)

    # --- quotations ---------------------------------------------------------------------------

    async def get_quote(self, symbol: str, *, market: str = "J") -> Quote:
        """Current price and day statistics (inquire-price, FHKST01010100)."""
        response = await self._get(
            f"{QUOTATIONS}/inquire-price", PRICE_TR, {"FID_COND_MRKT_DIV_CODE": market, "FID_INPUT_ISCD": symbol}
        )
        return Quote.model_validate(response.body.get("output") or {})

    async def get_daily_bars(
        self,
        symbol: str,
        start: date,
        end: date,
        *,
        period: Literal["D", "W", "M", "Y"] = "D",
        adjusted: bool = True,
        market: str = "J",
    ) -> list[DailyBar]:
        """Bars from ``start`` to ``end`` inclusive, oldest first (FHKST03010100).

        The server returns at most 100 rows per call, newest first, so the range is walked
        backwards by moving ``FID_INPUT_DATE_2`` before the oldest row received.
        """
        if start > end:
            raise KisInvalidInput("start is after end")
        bars: dict[date, DailyBar] = {}
        upto = end
        for _ in range(self.settings.max_pages):
            response = await self._get(
                f"{QUOTATIONS}/inquire-daily-itemchartprice",
                DAILY_CHART_TR,
                {
                    "FID_COND_MRKT_DIV_CODE": market,
                    "FID_INPUT_ISCD": symbol,
                    "FID_INPUT_DATE_1": _ymd(start),
                    "FID_INPUT_DATE_2": _ymd(upto),
                    "FID_PERIOD_DIV_CODE": period,
                    "FID_ORG_ADJ_PRC": "0" if adjusted else "1",
                },
            )
            page = [DailyBar.model_validate(row) for row in _rows(response.body.get("output2"))]
            dated = [bar for bar in page if bar.date is not None]
            fresh = [bar for bar in dated if bar.date not in bars and start <= bar.date <= end]  # type: ignore[operator]
            for bar in fresh:
                assert bar.date is not None
                bars[bar.date] = bar
            if not fresh:
                break
            oldest = min(bar.date for bar in dated if bar.date is not None)
            if oldest <= start:
                break
            upto = oldest - timedelta(days=1)
        else:
            raise KisOperational(f"{DAILY_CHART_TR}: range not covered in {self.settings.max_pages} pages")
        return [bars[day] for day in sorted(bars)]

    async def get_minute_bars(
        self,
        symbol: str,
        *,
        until: time | None = None,
        since: time | None = None,
        include_past: bool = True,
        market: str = "J",
    ) -> list[MinuteBar]:
        """Today's one-minute bars up to ``until`` (default now), back to ``since``, oldest first.

        30 bars per call (FHKST03010200); each next call asks for bars up to the oldest
        received minus one minute.
        """
        cursor = until or to_kst(self.clock.now()).time().replace(microsecond=0)
        bars: dict[datetime, MinuteBar] = {}
        for _ in range(self.settings.max_pages):
            response = await self._get(
                f"{QUOTATIONS}/inquire-time-itemchartprice",
                MINUTE_CHART_TR,
                {
                    "FID_ETC_CLS_CODE": "",
                    "FID_COND_MRKT_DIV_CODE": market,
                    "FID_INPUT_ISCD": symbol,
                    "FID_INPUT_HOUR_1": cursor.strftime("%H%M%S"),
                    "FID_PW_DATA_INCU_YN": "Y" if include_past else "N",
                },
            )
            page = [
                bar
                for bar in (MinuteBar.model_validate(row) for row in _rows(response.body.get("output2")))
                if bar.date is not None and bar.time is not None
            ]
            fresh = [bar for bar in page if bar.at not in bars]
            for bar in fresh:
                bars[bar.at] = bar
            if not fresh:
                break
            oldest = min(bar.at for bar in page)
            if since is not None and oldest.time() <= since:
                break
            previous = oldest - timedelta(minutes=1)
            if previous.date() != oldest.date():
                break
            cursor = previous.time()
        else:
            raise KisOperational(f"{MINUTE_CHART_TR}: range not covered in {self.settings.max_pages} pages")
        return [
            bars[at]
            for at in sorted(bars)
            if (since is None or at.time() >= since) and (until is None or at.time() <= until)
        ]

    async def get_order_book(self, symbol: str, *, market: str = "J") -> OrderBookSnapshot:
        """10-level order book and expected auction price (FHKST01010200)."""
        response = await self._get(
            f"{QUOTATIONS}/inquire-asking-price-exp-ccn",
            ORDER_BOOK_TR,
            {"FID_COND_MRKT_DIV_CODE": market, "FID_INPUT_ISCD": symbol},
        )
        book = response.body.get("output1") or {}
        expected = response.body.get("output2") or {}
        if not isinstance(book, dict) or not isinstance(expected, dict):
            raise KisOperational(f"{ORDER_BOOK_TR}: unexpected output shape")

        def levels(side: str) -> tuple[BookLevel, ...]:
            return tuple(
                BookLevel(price=parse_int(book.get(f"{side}p{i}")), quantity=parse_int(book.get(f"{side}p_rsqn{i}")))
                for i in range(1, 11)
            )

        return OrderBookSnapshot(
            symbol=str(expected.get("stck_shrn_iscd") or symbol).strip(),
            at=kst_datetime_of(self._today(), parse_time(book.get("aspr_acpt_hour"))),
            asks=levels("ask"),
            bids=levels("bid"),
            total_ask_quantity=parse_int(book.get("total_askp_rsqn")),
            total_bid_quantity=parse_int(book.get("total_bidp_rsqn")),
            price=parse_int(expected.get("stck_prpr")),
            expected_price=parse_int(expected.get("antc_cnpr")),
            expected_volume=parse_int(expected.get("antc_vol")),
            raw_book=book,
            raw_expected=expected,
        )

    # --- orders -------------------------------------------------------------------------------

    async def buy(
        self,
        symbol: str,
        quantity: int,
        price: int = 0,
        *,
        order_division: OrderDivision = "00",
        exchange: str = "KRX",
        condition_price: int | None = None,
    ) -> OrderAck:
        return await self.place_order("buy", symbol, quantity, price, order_division, exchange, condition_price)

    async def sell(
        self,
        symbol: str,
        quantity: int,
        price: int = 0,
        *,
        order_division: OrderDivision = "00",
        exchange: str = "KRX",
        condition_price: int | None = None,
    ) -> OrderAck:
        return await self.place_order("sell", symbol, quantity, price, order_division, exchange, condition_price)

    async def place_order(
        self,
        side: Side,
        symbol: str,
        quantity: int,
        price: int,
        order_division: OrderDivision = "00",
        exchange: str = "KRX",
        condition_price: int | None = None,
    ) -> OrderAck:
        """A cash order (order-cash). Success means *accepted*; fills arrive later.

        Raises ``OrderOutcomeUnknown`` when the request may have reached KIS without an answer.
        """
        if quantity < 1:
            raise KisInvalidInput("order quantity must be at least 1 share")
        if order_division in MARKET_PRICE_DIVISIONS:
            price = 0
        elif price <= 0:
            raise KisInvalidInput(f"ORD_DVSN {order_division} needs a positive price")
        body = {
            **self._account(),
            "PDNO": symbol,
            "ORD_DVSN": order_division,
            "ORD_QTY": str(quantity),
            "ORD_UNPR": str(price),
        }
        if self.settings.order_tr_ids == "new":
            body["EXCG_ID_DVSN_CD"] = exchange
            if side == "sell":
                body["SLL_TYPE"] = "01"
        if order_division == "22":
            if not condition_price:
                raise KisInvalidInput("stop-limit (22) orders need a condition price")
            body["CNDT_PRIC"] = str(condition_price)
        tr_id = self._tr(side)
        response = await self.rest.request("POST", f"{TRADING}/order-cash", tr_id=tr_id, body=body, kind="order")
        ack = self._order_ack(response)
        log.info("kis.order_accepted", tr_id=tr_id, side=side, symbol=symbol, quantity=quantity, order_no=ack.order_no)
        return ack

    async def modify_order(
        self,
        org_no: str,
        order_no: str,
        *,
        price: int,
        quantity: int = 0,
        order_division: OrderDivision = "00",
        exchange: str = "KRX",
    ) -> OrderAck:
        """Change the price of an open order; ``quantity=0`` means all that remains."""
        return await self._revise("01", org_no, order_no, quantity, price, order_division, exchange)

    async def cancel_order(
        self,
        org_no: str,
        order_no: str,
        *,
        quantity: int = 0,
        order_division: OrderDivision = "00",
        exchange: str = "KRX",
    ) -> OrderAck:
        """Cancel an open order; ``quantity=0`` cancels all that remains."""
        return await self._revise("02", org_no, order_no, quantity, 0, order_division, exchange)

    async def _revise(
        self,
        kind: Literal["01", "02"],
        org_no: str,
        order_no: str,
        quantity: int,
        price: int,
        order_division: str,
        exchange: str,
    ) -> OrderAck:
        if quantity < 0:
            raise KisInvalidInput("quantity cannot be negative")
        body = {
            **self._account(),
            "KRX_FWDG_ORD_ORGNO": org_no,
            "ORGN_ODNO": order_no,
            "ORD_DVSN": order_division,
            "RVSE_CNCL_DVSN_CD": kind,
            "ORD_QTY": str(quantity),
            "ORD_UNPR": str(price),
            "QTY_ALL_ORD_YN": "Y" if quantity == 0 else "N",
        }
        if self.settings.order_tr_ids == "new":
            body["EXCG_ID_DVSN_CD"] = exchange
        tr_id = self._tr("rvsecncl")
        response = await self.rest.request("POST", f"{TRADING}/order-rvsecncl", tr_id=tr_id, body=body, kind="order")
        ack = self._order_ack(response)
        log.info("kis.order_revised", tr_id=tr_id, kind="modify" if kind == "01" else "cancel", order_no=ack.order_no)
        return ack

    def _order_ack(self, response: KisResponse) -> OrderAck:
        output = response.body.get("output") or {}
        if not isinstance(output, dict):
            raise KisOperational("order answer has no output object")
        # Order outputs are UPPERCASE; accept either case.
        values = {str(k).upper(): str(v).strip() for k, v in output.items()}
        return OrderAck(
            org_no=values.get("KRX_FWDG_ORD_ORGNO", ""),
            order_no=values.get("ODNO", ""),
            ordered_at=kst_datetime_of(self._today(), parse_time(values.get("ORD_TMD"))),
            msg_cd=response.msg_cd,
            message=response.msg1,
        )

    # --- account ------------------------------------------------------------------------------

    async def get_balance(self, *, include_previous_day: bool = True) -> Balance:
        """Holdings and cash summary over every page (inquire-balance)."""
        pages = await self.rest.paged(
            f"{TRADING}/inquire-balance",
            tr_id=self.settings.tr_id(BALANCE_TR),
            params={
                **self._account(),
                "AFHR_FLPR_YN": "N",
                "OFL_YN": "",
                "INQR_DVSN": "01",
                "UNPR_DVSN": "01",
                "FUND_STTL_ICLD_YN": "N",
                "FNCG_AMT_AUTO_RDPT_YN": "N",
                "PRCS_DVSN": "00" if include_previous_day else "01",
            },
        )
        holdings = [Holding.model_validate(row) for page in pages for row in _rows(page.body.get("output1"))]
        summaries = _rows(pages[-1].body.get("output2"))
        return Balance(
            holdings=tuple(holdings), summary=BalanceSummary.model_validate(summaries[0] if summaries else {})
        )

    async def get_daily_orders(
        self,
        start: date,
        end: date | None = None,
        *,
        side: Literal["all", "sell", "buy"] = "all",
        symbol: str = "",
        order_no: str = "",
        filled: Literal["all", "filled", "unfilled"] = "all",
        newest_first: bool = True,
        exchange: str = "KRX",
    ) -> DailyOrders:
        """Orders and their fills between two dates over every page (inquire-daily-ccld)."""
        end = end or self._today()
        recent = start >= self._today() - timedelta(days=CCLD_RECENT_DAYS)
        pages = await self.rest.paged(
            f"{TRADING}/inquire-daily-ccld",
            tr_id=self._tr("ccld_recent" if recent else "ccld_old"),
            params={
                **self._account(),
                "INQR_STRT_DT": _ymd(start),
                "INQR_END_DT": _ymd(end),
                "SLL_BUY_DVSN_CD": {"all": "00", "sell": "01", "buy": "02"}[side],
                "PDNO": symbol,
                "ORD_GNO_BRNO": "",
                "ODNO": order_no,
                "CCLD_DVSN": {"all": "00", "filled": "01", "unfilled": "02"}[filled],
                "INQR_DVSN": "00" if newest_first else "01",
                "INQR_DVSN_1": "",
                "INQR_DVSN_3": "00",
                "EXCG_ID_DVSN_CD": exchange,
            },
        )
        orders = [OrderRecord.model_validate(row) for page in pages for row in _rows(page.body.get("output1"))]
        summary = _rows(pages[-1].body.get("output2"))
        return DailyOrders(
            orders=tuple(orders), summary=DailyOrdersSummary.model_validate(summary[0] if summary else {})
        )

    async def get_buying_power(
        self, symbol: str, *, price: int = 0, order_division: OrderDivision = "01"
    ) -> BuyingPower:
        """Orderable cash and quantity for ``symbol`` (inquire-psbl-order); market division by default."""
        response = await self._get(
            f"{TRADING}/inquire-psbl-order",
            self.settings.tr_id(PSBL_ORDER_TR),
            {
                **self._account(),
                "PDNO": symbol,
                "ORD_UNPR": str(price) if price else "",
                "ORD_DVSN": order_division,
                "CMA_EVLU_AMT_ICLD_YN": "N",
                "OVRS_ICLD_YN": "N",
            },
        )
        return BuyingPower.model_validate(response.body.get("output") or {})
