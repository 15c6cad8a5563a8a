"""The REST side of the simulator: one FastAPI app per domain (kis-api.md §2–§4, §6).

Every ``/uapi`` call passes the gateway in the real service's order of concerns: injected
faults, app key and secret, domain of the key, bearer token, the per-appkey token bucket, then
the tr_id of the endpoint. Gateway refusals are HTTP 500 with the rt_cd/msg_cd/msg1 envelope;
business refusals are HTTP 200 with rt_cd != "0"; the token endpoints answer 403 with
error_code/error_description. Every value in a response body is a string.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError

from common.clock import SystemClock, to_kst
from common.kis.sim import messages as m
from common.kis.sim import views
from common.kis.sim.auth import TokenThrottled
from common.kis.sim.exchange import LIMIT_ORDER, MARKET_ORDER, AccountState, Revision, Side, max_buy_qty
from common.kis.sim.faults import FaultSpec
from common.kis.sim.market import DayBar, Quote
from common.kis.sim.settings import Domain, SimAccount
from common.kis.sim.state import SimState
from common.kis.sim.ws import WebSocketHub
from common.krx import SESSION_CLOSE

log = structlog.get_logger(__name__)

T = TypeVar("T")

PREFIX = "/uapi/domestic-stock/v1"
BUY_TRS = {"TTTC0802U", "TTTC0012U"}
SELL_TRS = {"TTTC0801U", "TTTC0011U"}
REVISE_TRS = {"TTTC0803U", "TTTC0013U"}
BALANCE_TRS = {"TTTC8434R"}
CCLD_TRS = {"TTTC8001R", "TTTC0081R"}
PSBL_TRS = {"TTTC8908R"}
BALANCE_PAGE = {"real": 50, "paper": 20}
CCLD_PAGE = {"real": 100, "paper": 15}
DAILY_ROWS = 100
MINUTE_ROWS = 30


def paper_variant(tr_id: str) -> str:
    """The paper tr_id: first letter T/J/C replaced by V (kis-api.md §3.6)."""
    return "V" + tr_id[1:] if tr_id[:1] in ("T", "J", "C") else tr_id


@dataclass(frozen=True, slots=True)
class Call:
    """A /uapi request that passed the gateway."""

    account: SimAccount
    tr_id: str
    params: dict[str, str]
    tr_cont: str


def kis_response(body: dict[str, Any], tr_id: str = "", tr_cont: str | None = None, status: int = 200) -> Response:
    headers = {"tr_id": tr_id, "gt_uid": uuid.uuid4().hex}
    if tr_cont is not None:
        headers["tr_cont"] = tr_cont
    content = json.dumps(body, ensure_ascii=False)
    return Response(content, status_code=status, media_type="application/json; charset=utf-8", headers=headers)


def token_error(code_and_text: tuple[str, str]) -> Response:
    code, text = code_and_text
    return kis_response({"error_description": text, "error_code": code}, status=403)


def upper_params(request: Request) -> dict[str, str]:
    """Query names are case-insensitive on the real server (kis-api.md §3.2)."""
    return {key.upper(): value for key, value in request.query_params.items()}


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as e:
        raise m.GatewayError(m.Message("1", "OPSQ0001", "JSON PARSING ERROR : invalid json format")) from e
    if not isinstance(body, dict):
        raise m.GatewayError(m.Message("1", "OPSQ0001", "JSON PARSING ERROR : body is not an object"))
    return body


def body_upper(body: dict[str, Any]) -> dict[str, str]:
    return {str(key).upper(): "" if value is None else str(value) for key, value in body.items()}


def parse_int(value: str, field: str, minimum: int = 0) -> int:
    text = value.strip()
    if not text.isdigit() or int(text) < minimum:
        raise m.KisReject(m.invalid_input(field))
    return int(text)


def parse_day(value: str, field: str) -> date:
    text = value.strip()
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError as e:
        if text in ("", "00000101", "00000000"):
            return date(1900, 1, 1)
        raise m.KisReject(m.invalid_input(field)) from e


def paginate(items: Sequence[T], call: Call, size: int) -> tuple[Sequence[T], bool, str]:
    """One page of ``items`` following the tr_cont / ctx_area_nk100 cursor (kis-api.md §3.4)."""
    offset = 0
    cursor = call.params.get("CTX_AREA_NK100", "").strip()
    if call.tr_cont == "N" and cursor:
        if not cursor.isdigit():
            raise m.KisReject(m.invalid_input("CTX_AREA_NK100"))
        offset = int(cursor)
    end = offset + size
    more = end < len(items)
    return items[offset:end], more, (str(end) if more else "")


def create_rest_app(state: SimState, hub: WebSocketHub, domain: Domain) -> FastAPI:
    """The REST listener of one domain; both share ``state`` (accounts, tokens, market)."""
    app = FastAPI(title=f"KIS simulator ({domain})", docs_url=None, redoc_url=None, openapi_url=None)
    settings = state.settings
    exchange = state.exchange

    @app.exception_handler(m.GatewayError)
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, m.GatewayError)
        log.info("kis_sim.rest.gateway_refused", domain=domain, path=request.url.path, msg_cd=exc.message.msg_cd)
        return kis_response(exc.message.body(), tr_id=request.headers.get("tr_id", ""), status=exc.status)

    @app.exception_handler(m.KisReject)
    async def on_reject(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, m.KisReject)
        log.info("kis_sim.rest.rejected", domain=domain, path=request.url.path, msg_cd=exc.message.msg_cd)
        return kis_response(exc.message.body(), tr_id=request.headers.get("tr_id", ""))

    @app.middleware("http")
    async def inject_faults(request: Request, call_next: Any) -> Response:
        if request.url.path.startswith("/admin"):
            response: Response = await call_next(request)
            return response
        latency = state.faults.latency()
        if latency:
            await state.wall.sleep(latency)
        status = state.faults.take_http_error()
        if status is not None:
            log.info("kis_sim.fault.http_error", domain=domain, path=request.url.path, status=status)
            return PlainTextResponse(f"{status} simulated upstream failure", status_code=status)
        response = await call_next(request)
        return response

    # -- gateway -------------------------------------------------------------------------------------

    def credentials(appkey: str, secret: str) -> SimAccount:
        account = state.account(appkey)
        if account is None:
            raise m.GatewayError(m.BAD_APPKEY)
        if not hmac.compare_digest(secret.encode(), account.appsecret.get_secret_value().encode()):
            raise m.GatewayError(m.BAD_APPSECRET)
        if account.domain != domain:
            raise m.GatewayError(m.PAPER_KEY_ON_REAL if domain == "real" else m.REAL_KEY_ON_PAPER)
        return account

    def gate(request: Request, real_trs: set[str], quote: bool = False) -> Call:
        if state.faults.take_rate_limit():
            raise m.GatewayError(m.RATE_LIMITED)
        headers = request.headers
        account = credentials(headers.get("appkey", ""), headers.get("appsecret", ""))
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise m.GatewayError(m.BAD_CREDENTIALS_TYPE)
        state.tokens.check(token.strip(), account.appkey)
        if not state.rest_buckets[domain].take(account.appkey):
            raise m.GatewayError(m.RATE_LIMITED)
        tr_id = headers.get("tr_id", "").strip()
        allowed = real_trs if quote or domain == "real" else {paper_variant(t) for t in real_trs}
        if tr_id not in allowed:
            if domain == "paper" and tr_id in real_trs:
                raise m.GatewayError(m.NOT_PAPER_TR)
            raise m.GatewayError(m.UNKNOWN_TR)
        return Call(account, tr_id, upper_params(request), headers.get("tr_cont", "").strip().upper())

    def own_account(call: Call, fields: dict[str, str]) -> AccountState:
        config = call.account
        if fields.get("CANO", "") != config.cano or fields.get("ACNT_PRDT_CD", "") != config.acnt_prdt_cd:
            raise m.KisReject(m.INVALID_ACCOUNT)
        return exchange.account(config.appkey)

    def ok(output: dict[str, Any], call: Call, message: m.Message = m.QUOTE_OK, tr_cont: str | None = None) -> Response:
        return kis_response({**message.body(), **output}, tr_id=call.tr_id, tr_cont=tr_cont)

    def now() -> datetime:
        instant = state.clock.now()
        exchange.advance_to(instant)
        return instant

    # -- OAuth -------------------------------------------------------------------------------------

    @app.post("/oauth2/tokenP")
    async def issue_token(request: Request) -> Response:
        body = await json_body(request)
        appkey = str(body.get("appkey", ""))
        account = state.account(appkey)
        if account is None:
            return token_error(m.TOKEN_BAD_APPKEY)
        if not state.token_bucket.take(appkey):
            return token_error(m.TOKEN_THROTTLED)
        secret = str(body.get("appsecret", ""))
        if not hmac.compare_digest(secret.encode(), account.appsecret.get_secret_value().encode()):
            return token_error(m.TOKEN_BAD_SECRET)
        if body.get("grant_type") != "client_credentials":
            return token_error(m.TOKEN_BAD_GRANT)
        if account.domain != domain:
            text = (m.PAPER_KEY_ON_REAL if domain == "real" else m.REAL_KEY_ON_PAPER).msg1
            return token_error(("EGW02004", text))
        try:
            token = state.tokens.issue(account)
        except TokenThrottled:
            log.info("kis_sim.token.throttled", domain=domain)
            return token_error(m.TOKEN_THROTTLED)
        log.info("kis_sim.token.issued", domain=domain, expires=token.response()["access_token_token_expired"])
        return kis_response(token.response())

    @app.post("/oauth2/revokeP")
    async def revoke_token(request: Request) -> Response:
        body = await json_body(request)
        account = state.account(str(body.get("appkey", "")))
        if account is None:
            return token_error(m.TOKEN_BAD_APPKEY)
        if not hmac.compare_digest(
            str(body.get("appsecret", "")).encode(), account.appsecret.get_secret_value().encode()
        ):
            return token_error(m.TOKEN_BAD_SECRET)
        if not state.tokens.revoke(str(body.get("token", "")), account.appkey):
            return token_error(("EGW00121", m.TOKEN_INVALID.msg1))
        log.info("kis_sim.token.revoked", domain=domain)
        return kis_response({"code": 200, "message": m.REVOKE_OK})

    @app.post("/oauth2/Approval")
    async def approval(request: Request) -> Response:
        body = await json_body(request)
        appkey = str(body.get("appkey", ""))
        account = state.account(appkey)
        if account is None:
            return token_error(m.TOKEN_BAD_APPKEY)
        if not hmac.compare_digest(
            str(body.get("secretkey", "")).encode(), account.appsecret.get_secret_value().encode()
        ):
            return token_error(m.TOKEN_BAD_SECRET)
        if body.get("grant_type") != "client_credentials":
            return token_error(m.TOKEN_BAD_GRANT)
        if not state.approval_bucket.take(appkey):
            raise m.GatewayError(m.RATE_LIMITED)
        # The key is bound to the app key's own domain: PK asks for its real key on the paper host.
        key = state.approvals.issue(appkey)
        log.info("kis_sim.approval.issued", domain=account.domain)
        return kis_response({"approval_key": key})

    @app.post("/uapi/hashkey")
    async def hashkey(request: Request) -> Response:
        credentials(request.headers.get("appkey", ""), request.headers.get("appsecret", ""))
        raw = await request.body()
        body = await json_body(request)
        return kis_response({"BODY": body, "HASH": hashlib.sha256(raw).hexdigest()})

    # -- quotations ----------------------------------------------------------------------------------

    def symbol_of(call: Call) -> str:
        market_code = call.params.get("FID_COND_MRKT_DIV_CODE", "J").strip().upper()
        if market_code not in ("J", "NX", "UN"):
            raise m.KisReject(m.invalid_input("FID_COND_MRKT_DIV_CODE"))
        return call.params.get("FID_INPUT_ISCD", "").strip()

    @app.get(f"{PREFIX}/quotations/inquire-price")
    async def inquire_price(request: Request) -> Response:
        call = gate(request, {"FHKST01010100"}, quote=True)
        code = symbol_of(call)
        quote = state.market.quote(code, now())
        if quote is None:
            return ok({"output": views.unknown_price_output(code)}, call)
        return ok({"output": views.inquire_price_output(state.market, quote)}, call)

    @app.get(f"{PREFIX}/quotations/inquire-daily-itemchartprice")
    async def daily_chart(request: Request) -> Response:
        call = gate(request, {"FHKST03010100"}, quote=True)
        code = symbol_of(call)
        start = parse_day(call.params.get("FID_INPUT_DATE_1", ""), "FID_INPUT_DATE_1")
        end = parse_day(call.params.get("FID_INPUT_DATE_2", ""), "FID_INPUT_DATE_2")
        period = call.params.get("FID_PERIOD_DIV_CODE", "D").strip().upper()
        if period not in ("D", "W", "M", "Y"):
            raise m.KisReject(m.invalid_input("FID_PERIOD_DIV_CODE"))
        if call.params.get("FID_ORG_ADJ_PRC", "0").strip() not in ("0", "1"):
            raise m.KisReject(m.invalid_input("FID_ORG_ADJ_PRC"))
        instant = now()
        quote = state.market.quote(code, instant)
        if quote is None:
            return ok({"output1": {}, "output2": []}, call, tr_cont="D")
        rows = chart_rows(code, quote, start, end, period)
        more = len(rows) > DAILY_ROWS
        return ok(
            {"output1": views.chart_summary(state.market, quote), "output2": rows[:DAILY_ROWS]},
            call,
            tr_cont="M" if more else "D",
        )

    def chart_rows(code: str, quote: Quote, start: date, end: date, period: str) -> list[dict[str, str]]:
        history = list(state.market.daily_bars(code, quote.day))
        live_today = quote.trading_now or (quote.day == to_kst(state.clock.now()).date() and quote.opened)
        live = quote if live_today else None
        if history and history[-1].day == quote.day and not quote.opened:
            history.pop()  # today's bar exists only once the session has opened
        previous_close: dict[date, int] = {}
        for before, bar in itertools.pairwise(history):
            previous_close[bar.day] = before.close
        selected = [bar for bar in history if start <= bar.day <= end]
        if period == "D":
            rows = [
                views.daily_row(bar, previous_close.get(bar.day), live if bar.day == quote.day else None)
                for bar in selected
            ]
            rows.reverse()
            return rows
        groups: dict[tuple[int, int], list[DayBar]] = {}
        for bar in selected:
            if period == "W":
                iso = bar.day.isocalendar()
                key = (iso.year, iso.week)
            elif period == "M":
                key = (bar.day.year, bar.day.month)
            else:
                key = (bar.day.year, 0)
            groups.setdefault(key, []).append(bar)
        rows = []
        for bars in groups.values():
            merged = DayBar(
                day=bars[-1].day,
                open=bars[0].open,
                high=max(b.high for b in bars),
                low=min(b.low for b in bars),
                close=bars[-1].close,
                volume=sum(b.volume for b in bars),
            )
            rows.append(views.daily_row(merged, previous_close.get(bars[0].day)))
        rows.reverse()
        return rows

    @app.get(f"{PREFIX}/quotations/inquire-time-itemchartprice")
    async def minute_chart(request: Request) -> Response:
        call = gate(request, {"FHKST03010200"}, quote=True)
        code = symbol_of(call)
        hour_text = call.params.get("FID_INPUT_HOUR_1", "").strip()
        if len(hour_text) != 6 or not hour_text.isdigit():
            raise m.KisReject(m.invalid_input("FID_INPUT_HOUR_1"))
        until = time(min(23, int(hour_text[:2])), min(59, int(hour_text[2:4])), min(59, int(hour_text[4:])))
        quote = state.market.quote(code, now())
        if quote is None:
            return ok({"output1": {}, "output2": []}, call, tr_cont="D")
        path = quote.path
        last = quote.index
        if until < SESSION_CLOSE:
            limit = datetime.combine(quote.day, until, tzinfo=to_kst(state.clock.now()).tzinfo)
            last = min(last, state.market.tick_index(path, limit))
        bars = state.market.minute_bars(path, last) if last >= 0 else []
        rows = []
        cumulative = 0
        for bar in bars:
            cumulative += bar[6]
            rows.append(views.minute_row(quote.day, bar, cumulative))
        rows.reverse()
        return ok(
            {"output1": views.chart_summary(state.market, quote, minute=True), "output2": rows[:MINUTE_ROWS]},
            call,
            tr_cont="D",
        )

    @app.get(f"{PREFIX}/quotations/inquire-asking-price-exp-ccn")
    async def order_book(request: Request) -> Response:
        call = gate(request, {"FHKST01010200"}, quote=True)
        code = symbol_of(call)
        instant = now()
        quote = state.market.quote(code, instant)
        if quote is None:
            raise m.KisReject(m.UNKNOWN_SYMBOL)
        output1, output2 = views.book_outputs(quote, instant)
        return ok({"output1": output1, "output2": output2}, call)

    # -- trading ------------------------------------------------------------------------------------

    def order_output(order_odno: str, orgno: str, instant: datetime) -> dict[str, Any]:
        tmd = to_kst(instant).strftime("%H%M%S")
        return {"output": {"KRX_FWDG_ORD_ORGNO": orgno, "ODNO": order_odno, "ORD_TMD": tmd}}

    def check_exchange_id(fields: dict[str, str]) -> None:
        venue = fields.get("EXCG_ID_DVSN_CD", "").strip().upper()
        if venue not in ("", "KRX"):
            raise m.KisReject(m.invalid_input("EXCG_ID_DVSN_CD"))

    def parse_price(fields: dict[str, str], division: str) -> int:
        text = fields.get("ORD_UNPR", "").strip()
        if division == MARKET_ORDER:
            if text not in ("", "0"):
                raise m.KisReject(m.invalid_input("ORD_UNPR"))
            return 0
        return parse_int(text, "ORD_UNPR", minimum=1)

    @app.post(f"{PREFIX}/trading/order-cash")
    async def order_cash(request: Request) -> Response:
        call = gate(request, BUY_TRS | SELL_TRS)
        fields = body_upper(await json_body(request))
        account = own_account(call, fields)
        side = Side.BUY if call.tr_id[1:] in {t[1:] for t in BUY_TRS} else Side.SELL
        division = fields.get("ORD_DVSN", "").strip()
        if division not in (LIMIT_ORDER, MARKET_ORDER):
            raise m.KisReject(m.invalid_input("ORD_DVSN"))
        check_exchange_id(fields)
        code = fields.get("PDNO", "").strip()
        if not state.market.knows(code):
            raise m.KisReject(m.UNKNOWN_SYMBOL)
        qty = parse_int(fields.get("ORD_QTY", ""), "ORD_QTY", minimum=1)
        price = parse_price(fields, division)
        instant = state.clock.now()
        order = exchange.place(account, code, side, division, qty, price, instant)
        message = m.ORDER_SENT_REAL
        if domain == "paper":
            message = m.BUY_SENT_PAPER if side is Side.BUY else m.SELL_SENT_PAPER
        return ok(order_output(order.odno, order.orgno, instant), call, message)

    @app.post(f"{PREFIX}/trading/order-rvsecncl")
    async def order_revise(request: Request) -> Response:
        call = gate(request, REVISE_TRS)
        fields = body_upper(await json_body(request))
        account = own_account(call, fields)
        kind = fields.get("RVSE_CNCL_DVSN_CD", "").strip()
        if kind not in ("01", "02"):
            raise m.KisReject(m.invalid_input("RVSE_CNCL_DVSN_CD"))
        revision = Revision.MODIFY if kind == "01" else Revision.CANCEL
        check_exchange_id(fields)
        original = fields.get("ORGN_ODNO", "").strip()
        if not original.isdigit():
            raise m.KisReject(m.invalid_input("ORGN_ODNO"))
        whole = fields.get("QTY_ALL_ORD_YN", "").strip().upper()
        if whole not in ("Y", "N"):
            raise m.KisReject(m.invalid_input("QTY_ALL_ORD_YN"))
        qty = None if whole == "Y" else parse_int(fields.get("ORD_QTY", ""), "ORD_QTY", minimum=1)
        division = fields.get("ORD_DVSN", "").strip() or LIMIT_ORDER
        price = 0
        if revision is Revision.MODIFY:
            if division not in (LIMIT_ORDER, MARKET_ORDER):
                raise m.KisReject(m.invalid_input("ORD_DVSN"))
            price = parse_price(fields, division)
        instant = state.clock.now()
        record = exchange.revise(account, original, revision, division, qty, price, instant)
        message = m.ORDER_SENT_REAL
        if domain == "paper":
            message = m.REVISE_SENT_PAPER if revision is Revision.MODIFY else m.CANCEL_SENT_PAPER
        return ok(order_output(record.odno, record.orgno, instant), call, message)

    @app.get(f"{PREFIX}/trading/inquire-balance")
    async def inquire_balance(request: Request) -> Response:
        call = gate(request, BALANCE_TRS)
        account = own_account(call, call.params)
        if call.params.get("INQR_DVSN", "").strip() != "01":
            raise m.KisReject(m.invalid_input("INQR_DVSN"))
        if call.params.get("AFHR_FLPR_YN", "N").strip().upper() not in ("N", "Y", "X"):
            raise m.KisReject(m.invalid_input("AFHR_FLPR_YN"))
        if call.params.get("PRCS_DVSN", "00").strip() not in ("00", "01"):
            raise m.KisReject(m.invalid_input("PRCS_DVSN"))
        instant = now()
        positions = exchange.held_positions(account, to_kst(instant).date())
        page, more, cursor = paginate(positions, call, BALANCE_PAGE[domain])
        search = "^".join([account.config.cano, account.config.acnt_prdt_cd, "N", "N", "01", "", "N", "N", "00"])
        output = {
            "ctx_area_fk100": search.ljust(100),
            "ctx_area_nk100": cursor.ljust(100),
            "output1": [views.holding_row(exchange, account, p, instant) for p in page],
            "output2": [views.balance_summary(exchange, account, instant)],
        }
        return ok(output, call, m.PAGE_MORE if more else m.PAGE_LAST, tr_cont="M" if more else "D")

    @app.get(f"{PREFIX}/trading/inquire-daily-ccld")
    async def inquire_daily_ccld(request: Request) -> Response:
        call = gate(request, CCLD_TRS)
        account = own_account(call, call.params)
        p = call.params
        start = parse_day(p.get("INQR_STRT_DT", ""), "INQR_STRT_DT")
        end = parse_day(p.get("INQR_END_DT", ""), "INQR_END_DT")
        side = p.get("SLL_BUY_DVSN_CD", "00").strip() or "00"
        filled = p.get("CCLD_DVSN", "00").strip() or "00"
        order_by = p.get("INQR_DVSN", "00").strip() or "00"
        for name, value, allowed in (
            ("SLL_BUY_DVSN_CD", side, ("00", "01", "02")),
            ("CCLD_DVSN", filled, ("00", "01", "02")),
            ("INQR_DVSN", order_by, ("00", "01")),
        ):
            if value not in allowed:
                raise m.KisReject(m.invalid_input(name))
        check_exchange_id({"EXCG_ID_DVSN_CD": "" if p.get("EXCG_ID_DVSN_CD", "") in ("ALL",) else p.get(
            "EXCG_ID_DVSN_CD", "")})
        code = p.get("PDNO", "").strip()
        odno = p.get("ODNO", "").strip().lstrip("0")
        now()
        orders = [
            o
            for o in exchange.orders_between(account, start, end)
            if (side == "00" or o.side.value == side)
            and (not code or o.code == code)
            and (not odno or o.odno.lstrip("0") == odno)
            and (filled == "00" or (filled == "01" and o.filled_qty > 0) or (filled == "02" and o.unfilled > 0))
        ]
        if order_by == "00":
            orders.reverse()
        page, more, cursor = paginate(orders, call, CCLD_PAGE[domain])
        search = "^".join([account.config.cano, account.config.acnt_prdt_cd, start.strftime("%Y%m%d"),
                           end.strftime("%Y%m%d"), side, filled, order_by])
        output = {
            "ctx_area_fk100": search.ljust(100),
            "ctx_area_nk100": cursor.ljust(100),
            "output1": [views.order_row(o) for o in page],
            "output2": views.orders_summary(orders),
        }
        return ok(output, call, m.PAGE_MORE if more else m.PAGE_LAST, tr_cont="M" if more else "D")

    @app.get(f"{PREFIX}/trading/inquire-psbl-order")
    async def inquire_psbl_order(request: Request) -> Response:
        call = gate(request, PSBL_TRS)
        account = own_account(call, call.params)
        code = call.params.get("PDNO", "").strip()
        division = call.params.get("ORD_DVSN", "").strip()
        if division not in (LIMIT_ORDER, MARKET_ORDER):
            raise m.KisReject(m.invalid_input("ORD_DVSN"))
        instant = now()
        quote = state.market.quote(code, instant)
        if quote is None:
            raise m.KisReject(m.UNKNOWN_SYMBOL)
        if division == MARKET_ORDER:
            unit = quote.limits[1]
        else:
            given = call.params.get("ORD_UNPR", "").strip()
            unit = int(given) if given.isdigit() and int(given) > 0 else quote.price
        cash = account.orderable_cash
        qty = max_buy_qty(cash, unit)
        output = {
            "ord_psbl_cash": str(cash),
            "ord_psbl_sbst": "0",
            "ruse_psbl_amt": "0",
            "fund_rpch_chgs": "0",
            "psbl_qty_calc_unpr": str(unit),
            "nrcvb_buy_amt": str(cash),
            "nrcvb_buy_qty": str(qty),
            "max_buy_amt": str(cash),
            "max_buy_qty": str(qty),
            "cma_evlu_amt": "0",
            "ovrs_re_use_amt_wcrc": "0",
            "ord_psbl_frcr_amt_wcrc": "0",
        }
        return ok({"output": output}, call)

    if settings.admin_enabled:
        add_admin_routes(app, state, hub, domain)
    return app


def add_admin_routes(app: FastAPI, state: SimState, hub: WebSocketHub, domain: Domain) -> None:
    """Fault injection and health, on the simulator only (never part of the KIS protocol)."""

    @app.get("/admin/faults")
    async def get_faults() -> JSONResponse:
        return JSONResponse({"domain": domain, "pending": state.faults.describe()})

    @app.post("/admin/faults")
    async def post_faults(request: Request) -> JSONResponse:
        try:
            spec = FaultSpec.model_validate(await json_body(request))
        except ValidationError as e:
            return JSONResponse({"error": "invalid fault spec", "detail": json.loads(e.json())}, status_code=422)
        state.faults.apply(spec)
        expired = state.tokens.expire_all() if spec.expire_tokens else 0
        dropped = hub.drop_all() if spec.drop_websockets else 0
        log.warning("kis_sim.fault.applied", spec=spec.model_dump(exclude_defaults=True))
        pending = state.faults.describe()
        body = {"domain": domain, "pending": pending, "tokens_expired": expired, "sessions_dropped": dropped}
        return JSONResponse(body)

    @app.delete("/admin/faults")
    async def delete_faults() -> JSONResponse:
        state.faults.clear()
        log.info("kis_sim.fault.cleared")
        return JSONResponse({"domain": domain, "pending": state.faults.describe()})

    @app.get("/admin/health")
    async def health() -> JSONResponse:
        instant = state.clock.now()
        # The market clock's speed lets another process follow it (``KIS_CLOCK=simulator``);
        # null for a clock that only moves when told to.
        speed = 1.0 if isinstance(state.clock, SystemClock) else getattr(state.clock, "speed", None)
        body = {"status": "ok", "domain": domain, "now": to_kst(instant).isoformat(), "speed": speed}
        return JSONResponse(body)
