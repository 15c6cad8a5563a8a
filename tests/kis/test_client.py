"""KisClient over ``httpx.MockTransport``: headers, typing, tokens, retries, paging, errors, secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from pydantic import SecretStr

from common.clock import FixedClock
from common.errors import Operational, Rejected, Retryable
from common.kis import (
    KisClient,
    KisConflict,
    KisInvalidInput,
    KisNotFound,
    KisOperational,
    KisRateLimited,
    KisSettings,
    KisUnavailable,
    MarketClosed,
    MemoryTokenStore,
    OrderOutcomeUnknown,
    TokenIssueThrottled,
)

APPKEY = "PSVTtestappkey0123456789abcdefghijkl"
APPSECRET = "S" * 60 + "secretpart" + "Z" * 110
CANO = "73310044"
HTS_ID = "htsuser77"
BASE = "http://kis.test"
START = datetime(2026, 7, 10, 1, 0, tzinfo=UTC)  # 10:00 KST, a Friday

Handler = Callable[[httpx.Request], httpx.Response]


def make_settings(**overrides: Any) -> KisSettings:
    values: dict[str, Any] = {
        "domain": "paper",
        "paper_rest_url": BASE,
        "real_rest_url": BASE,
        "appkey": SecretStr(APPKEY),
        "appsecret": SecretStr(APPSECRET),
        "cano": SecretStr(CANO),
        "hts_id": SecretStr(HTS_ID),
        "rate_per_second": 1000.0,
        "rate_burst": 1000,
    }
    values.update(overrides)
    return KisSettings(**values)


def ok(output: Any = None, *, tr_cont: str | None = None, **body: Any) -> httpx.Response:
    payload = {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.", **body}
    if output is not None:
        payload["output"] = output
    headers = {"tr_cont": tr_cont} if tr_cont is not None else {}
    return httpx.Response(200, json=payload, headers=headers)


def fail(msg_cd: str, msg1: str, *, status: int = 200, rt_cd: str = "1") -> httpx.Response:
    return httpx.Response(status, json={"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1})


class FakeKis:
    """A scripted KIS: per-path handlers, an issuance counter and a request log."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.routes: dict[str, Handler] = {}
        self.requests: list[httpx.Request] = []
        self.issued: list[datetime] = []
        self.token_response: Handler | None = None

    def route(self, path_suffix: str, handler: Handler) -> None:
        self.routes[path_suffix] = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/oauth2/tokenP":
            if self.token_response is not None:
                return self.token_response(request)
            self.issued.append(self.clock.now())
            body = json.loads(request.content)
            assert body == {"grant_type": "client_credentials", "appkey": APPKEY, "appsecret": APPSECRET}
            return httpx.Response(
                200,
                json={
                    "access_token": f"token-{len(self.issued)}",
                    "access_token_token_expired": "2026-07-11 10:00:00",
                    "token_type": "Bearer",
                    "expires_in": 86400,
                },
            )
        if path == "/oauth2/Approval":
            body = json.loads(request.content)
            assert body["secretkey"] == APPSECRET
            return httpx.Response(200, json={"approval_key": "approval-1"})
        for suffix, handler in self.routes.items():
            if path.endswith(suffix):
                return handler(request)
        return httpx.Response(404, json={})

    def calls(self, suffix: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith(suffix)]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def fake(clock: FixedClock) -> FakeKis:
    return FakeKis(clock)


def client_for(fake: FakeKis, clock: FixedClock, store: MemoryTokenStore | None = None, **overrides: Any) -> KisClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return KisClient(make_settings(**overrides), http=http, store=store or MemoryTokenStore(), clock=clock)


PRICE_OUTPUT = {
    "stck_shrn_iscd": "005930",
    "stck_prpr": "71900",
    "prdy_vrss": "-100",
    "prdy_vrss_sign": "5",
    "prdy_ctrt": "-0.14",
    "stck_oprc": "72100",
    "stck_hgpr": "72400",
    "stck_lwpr": "71700",
    "stck_mxpr": "93600",
    "stck_llam": "50400",
    "stck_sdpr": "72000",
    "acml_vol": "3052507",
    "acml_tr_pbmn": "219853241700",
    "wghn_avrg_stck_prc": "72023.83",
    "aspr_unit": "100",
    "temp_stop_yn": "N",
    "per": "13.50",
    "w52_hgpr_date": "20260301",
}


async def test_quote_sends_kis_headers_and_returns_typed_values(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/quotations/inquire-price", lambda r: ok(PRICE_OUTPUT))
    async with client_for(fake, clock) as client:
        quote = await client.get_quote("005930")
    assert quote.price == 71900
    assert quote.change == -100
    assert quote.change_rate == Decimal("-0.14")
    assert quote.vwap == Decimal("72023.83")
    assert quote.upper_limit == 93600
    assert quote.tick_size == 100
    assert quote.halted is False
    assert quote.w52_high_date == date(2026, 3, 1)
    assert quote.raw["stck_prpr"] == "71900"
    request = fake.calls("/inquire-price")[0]
    assert request.headers["authorization"] == "Bearer token-1"
    assert request.headers["appkey"] == APPKEY
    assert request.headers["appsecret"] == APPSECRET
    assert request.headers["tr_id"] == "FHKST01010100"
    assert request.headers["custtype"] == "P"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    assert request.url.params["FID_COND_MRKT_DIV_CODE"] == "J"
    assert request.url.params["FID_INPUT_ISCD"] == "005930"


async def test_token_is_issued_once_and_reused_by_a_second_client(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-price", lambda r: ok(PRICE_OUTPUT))
    store = MemoryTokenStore()
    async with client_for(fake, clock, store) as first, client_for(fake, clock, store) as second:
        await first.get_quote("005930")
        await first.get_quote("005930")
        clock.advance(timedelta(hours=5))
        await second.get_quote("005930")
    assert len(fake.issued) == 1


async def test_token_refreshed_when_less_than_ten_minutes_remain(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-price", lambda r: ok(PRICE_OUTPUT))
    async with client_for(fake, clock) as client:
        await client.get_quote("005930")
        clock.set(datetime(2026, 7, 11, 0, 51, tzinfo=UTC))  # 09:51 KST: 9 minutes left
        await client.get_quote("005930")
    assert len(fake.issued) == 2
    assert fake.calls("/inquire-price")[-1].headers["authorization"] == "Bearer token-2"


async def test_expired_token_is_reissued_once_and_the_call_retried(fake: FakeKis, clock: FixedClock) -> None:
    answers = [fail("EGW00123", "기간이 만료된 token 입니다.", status=500), ok(PRICE_OUTPUT)]
    fake.route("/inquire-price", lambda r: answers.pop(0))
    async with client_for(fake, clock) as client:
        await client.access_token()
        clock.advance(timedelta(minutes=5))
        quote = await client.get_quote("005930")
    assert quote.price == 71900
    assert len(fake.issued) == 2
    assert [r.headers["authorization"] for r in fake.calls("/inquire-price")] == ["Bearer token-1", "Bearer token-2"]


async def test_reissue_inside_the_minute_waits_for_the_minute_to_pass(fake: FakeKis, clock: FixedClock) -> None:
    answers = [fail("EGW00121", "유효하지 않은 token 입니다.", status=500), ok(PRICE_OUTPUT)]
    fake.route("/inquire-price", lambda r: answers.pop(0))
    async with client_for(fake, clock) as client:
        await client.get_quote("005930")
    assert len(fake.issued) == 2
    assert fake.issued[1] - fake.issued[0] >= timedelta(seconds=60)


async def test_token_rejected_twice_is_operational_not_a_loop(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-price", lambda r: fail("EGW00123", "기간이 만료된 token 입니다.", status=500))
    async with client_for(fake, clock) as client:
        with pytest.raises(KisOperational) as caught:
            await client.get_quote("005930")
    assert caught.value.msg_cd == "EGW00123"
    assert len(fake.issued) == 2


async def test_reissue_inside_the_minute_raises_when_waiting_is_not_allowed(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-price", lambda r: fail("EGW00123", "기간이 만료된 token 입니다.", status=500))
    async with client_for(fake, clock, token_issue_max_wait_seconds=0) as client:
        with pytest.raises(TokenIssueThrottled) as caught:
            await client.get_quote("005930")
    assert isinstance(caught.value, Retryable)
    assert 0 < caught.value.retry_after <= 60
    assert len(fake.issued) == 1


async def test_token_endpoint_403_throttle_is_retryable_with_the_wait(fake: FakeKis, clock: FixedClock) -> None:
    fake.token_response = lambda r: httpx.Response(
        403, json={"error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)", "error_code": "EGW00133"}
    )
    async with client_for(fake, clock) as client:
        with pytest.raises(TokenIssueThrottled) as caught:
            await client.get_quote("005930")
    assert caught.value.msg_cd == "EGW00133"
    assert caught.value.http_status == 403
    assert caught.value.retry_after >= 60
    assert isinstance(caught.value, Retryable)


async def test_token_endpoint_403_invalid_appkey_is_operational(fake: FakeKis, clock: FixedClock) -> None:
    fake.token_response = lambda r: httpx.Response(
        403, json={"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}
    )
    async with client_for(fake, clock) as client:
        with pytest.raises(KisOperational) as caught:
            await client.get_quote("005930")
    assert caught.value.msg_cd == "EGW00103"
    assert isinstance(caught.value, Operational)


async def test_rate_limit_egw00201_backs_off_then_succeeds(fake: FakeKis, clock: FixedClock) -> None:
    answers = [fail("EGW00201", "초당 거래건수를 초과하였습니다.", status=500)] * 2 + [ok(PRICE_OUTPUT)]
    fake.route("/inquire-price", lambda r: answers.pop(0))
    async with client_for(fake, clock) as client:
        await client.access_token()
        before = clock.now()
        quote = await client.get_quote("005930")
    assert quote.price == 71900
    assert len(fake.calls("/inquire-price")) == 3
    assert clock.now() - before >= timedelta(seconds=0.2 + 0.4)


async def test_rate_limit_that_persists_raises_rate_limited(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-price", lambda r: fail("EGW00201", "초당 거래건수를 초과하였습니다.", status=500))
    async with client_for(fake, clock, max_retries=2) as client:
        with pytest.raises(KisRateLimited) as caught:
            await client.get_quote("005930")
    assert caught.value.msg_cd == "EGW00201"
    assert isinstance(caught.value, Retryable)
    assert len(fake.calls("/inquire-price")) == 3


async def test_reads_are_retried_on_server_and_network_errors(fake: FakeKis, clock: FixedClock) -> None:
    attempts: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(attempts) == 2:
            return httpx.Response(502, text="bad gateway")
        return ok(PRICE_OUTPUT)

    fake.route("/inquire-price", flaky)
    async with client_for(fake, clock) as client:
        assert (await client.get_quote("005930")).price == 71900
    assert len(attempts) == 3


async def test_reads_give_up_after_max_retries(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-price", lambda r: httpx.Response(503, text="unavailable"))
    async with client_for(fake, clock, max_retries=1) as client:
        with pytest.raises(KisUnavailable):
            await client.get_quote("005930")
    assert len(fake.calls("/inquire-price")) == 2


ORDER_OUTPUT = {"KRX_FWDG_ORD_ORGNO": "00950", "ODNO": "0000117057", "ORD_TMD": "100001"}


async def test_order_timeout_raises_outcome_unknown_and_is_never_resent(fake: FakeKis, clock: FixedClock) -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    fake.route("/order-cash", hang)
    async with client_for(fake, clock) as client:
        with pytest.raises(OrderOutcomeUnknown) as caught:
            await client.buy("005930", 10, 71900)
    assert isinstance(caught.value, Retryable)
    assert len(fake.calls("/order-cash")) == 1


async def test_order_gateway_5xx_without_kis_answer_is_outcome_unknown(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/order-cash", lambda r: httpx.Response(504, text="gateway timeout"))
    async with client_for(fake, clock) as client:
        with pytest.raises(OrderOutcomeUnknown):
            await client.sell("005930", 1, 72000)
    assert len(fake.calls("/order-cash")) == 1


async def test_order_refused_before_sending_is_not_outcome_unknown(fake: FakeKis, clock: FixedClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fake.route("/order-cash", refuse)
    async with client_for(fake, clock) as client:
        with pytest.raises(KisUnavailable) as caught:
            await client.buy("005930", 1, 71900)
    assert not isinstance(caught.value, OrderOutcomeUnknown)
    assert len(fake.calls("/order-cash")) == 1


async def test_order_rate_limited_by_gateway_is_retried_safely(fake: FakeKis, clock: FixedClock) -> None:
    answers = [fail("EGW00201", "초당 거래건수를 초과하였습니다.", status=500), ok(ORDER_OUTPUT, msg_cd="APBK0013")]
    fake.route("/order-cash", lambda r: answers.pop(0))
    async with client_for(fake, clock) as client:
        ack = await client.buy("005930", 1, 71900)
    assert ack.order_no == "0000117057"
    assert len(fake.calls("/order-cash")) == 2


@pytest.mark.parametrize(
    ("domain", "style", "side", "expected"),
    [
        ("paper", "new", "buy", "VTTC0012U"),
        ("paper", "new", "sell", "VTTC0011U"),
        ("real", "new", "buy", "TTTC0012U"),
        ("real", "old", "sell", "TTTC0801U"),
        ("paper", "old", "buy", "VTTC0802U"),
    ],
)
async def test_order_cash_tr_ids_and_string_body(
    fake: FakeKis, clock: FixedClock, domain: str, style: str, side: str, expected: str
) -> None:
    fake.route("/order-cash", lambda r: ok(ORDER_OUTPUT, msg_cd="APBK0013", msg1="주문 전송 완료 되었습니다."))
    async with client_for(fake, clock, domain=domain, order_tr_ids=style) as client:
        ack = await (client.buy if side == "buy" else client.sell)("005930", 10, 71900)
    request = fake.calls("/order-cash")[0]
    assert request.method == "POST"
    assert request.headers["tr_id"] == expected
    body = json.loads(request.content)
    assert all(isinstance(v, str) for v in body.values())
    assert body["CANO"] == CANO and body["ACNT_PRDT_CD"] == "01"
    assert body["PDNO"] == "005930" and body["ORD_QTY"] == "10" and body["ORD_UNPR"] == "71900"
    assert body["ORD_DVSN"] == "00"
    assert ("EXCG_ID_DVSN_CD" in body) == (style == "new")
    assert ack.org_no == "00950"
    assert ack.order_no == "0000117057"
    assert ack.msg_cd == "APBK0013"
    assert ack.ordered_at is not None and ack.ordered_at.isoformat() == "2026-07-10T10:00:01+09:00"


async def test_market_order_sends_price_zero(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/order-cash", lambda r: ok(ORDER_OUTPUT))
    async with client_for(fake, clock) as client:
        await client.buy("005930", 3, 99999, order_division="01")
        with pytest.raises(KisInvalidInput):
            await client.buy("005930", 0, 71900)
    assert json.loads(fake.calls("/order-cash")[0].content)["ORD_UNPR"] == "0"


async def test_cancel_all_and_modify_bodies(fake: FakeKis, clock: FixedClock) -> None:
    fake.route(
        "/order-rvsecncl", lambda r: ok({"KRX_FWDG_ORD_ORGNO": "00950", "ODNO": "0000117058", "ORD_TMD": "100502"})
    )
    async with client_for(fake, clock) as client:
        cancel = await client.cancel_order("00950", "0000117057")
        await client.modify_order("00950", "0000117057", price=71800, quantity=5)
    first, second = (json.loads(r.content) for r in fake.calls("/order-rvsecncl"))
    assert fake.calls("/order-rvsecncl")[0].headers["tr_id"] == "VTTC0013U"
    assert first["RVSE_CNCL_DVSN_CD"] == "02" and first["QTY_ALL_ORD_YN"] == "Y"
    assert first["ORD_QTY"] == "0" and first["ORD_UNPR"] == "0" and first["ORGN_ODNO"] == "0000117057"
    assert second["RVSE_CNCL_DVSN_CD"] == "01" and second["QTY_ALL_ORD_YN"] == "N" and second["ORD_QTY"] == "5"
    assert cancel.order_no == "0000117058"


@pytest.mark.parametrize(
    ("response", "error", "family"),
    [
        (fail("APBK0656", "해당종목정보가 없습니다"), KisNotFound, Rejected),
        (fail("APBK0919", "장운영시간이 아닙니다"), MarketClosed, Rejected),
        (fail("APBK0506", "호가단위 오류"), KisInvalidInput, Rejected),
        (fail("APBK1359", "정정취소 수량 초과", rt_cd="7"), KisConflict, Rejected),
        (fail("OPSQ2001", "ERROR : INPUT INVALID_CHECK_INQR_DVSN"), KisInvalidInput, Rejected),
        (fail("OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO"), KisOperational, Operational),
        (
            fail("EGW02004", "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다.", status=500),
            KisOperational,
            Operational,
        ),
        (fail("", "모의투자 TR 이 아닙니다.", status=500), KisOperational, Operational),
        (fail("40270000", "모의투자 주문가능금액이 부족합니다."), Rejected, Rejected),
    ],
)
async def test_business_errors_are_translated_with_msg_cd(
    fake: FakeKis, clock: FixedClock, response: httpx.Response, error: type[Exception], family: type[Exception]
) -> None:
    fake.route("/order-cash", lambda r: response)
    async with client_for(fake, clock) as client:
        with pytest.raises(error) as caught:
            await client.buy("005930", 1, 71900)
    assert isinstance(caught.value, family)
    expected_code = json.loads(response.content)["msg_cd"] or None
    assert getattr(caught.value, "msg_cd", None) == expected_code
    assert len(fake.calls("/order-cash")) == 1


def balance_page(index: int, last: bool) -> httpx.Response:
    return ok(
        tr_cont="D" if last else "M",
        output1=[
            {"pdno": f"00{index}930", "prdt_name": "종목", "hldg_qty": "10", "ord_psbl_qty": "10",
             "pchs_avg_pric": "71500.5000", "pchs_amt": "715005", "prpr": "71900", "evlu_amt": "719000",
             "evlu_pfls_amt": "3995", "evlu_pfls_rt": "0.56"},
            {},
        ],
        output2=[{"dnca_tot_amt": str(1_000_000 + index), "tot_evlu_amt": "5000000", "nass_amt": "4999000"}],
        ctx_area_fk100=f"{CANO}^01^N^N^01^{index}".ljust(100),
        ctx_area_nk100=f"cursor-{index}".ljust(100),
    )  # fmt: skip


async def test_balance_follows_tr_cont_pages_with_ctx_keys_verbatim(fake: FakeKis, clock: FixedClock) -> None:
    pages = iter([balance_page(1, False), balance_page(2, False), balance_page(3, True)])
    fake.route("/inquire-balance", lambda r: next(pages))
    async with client_for(fake, clock) as client:
        balance = await client.get_balance()
    calls = fake.calls("/inquire-balance")
    assert [c.headers["tr_cont"] for c in calls] == ["", "N", "N"]
    assert calls[0].headers["tr_id"] == "VTTC8434R"
    assert calls[0].url.params["CTX_AREA_NK100"] == ""
    assert calls[1].url.params["CTX_AREA_NK100"] == "cursor-1".ljust(100)
    assert calls[2].url.params["CTX_AREA_FK100"] == f"{CANO}^01^N^N^01^2".ljust(100)
    assert calls[0].url.params["INQR_DVSN"] == "01"
    assert [h.symbol for h in balance.holdings] == ["001930", "002930", "003930"]
    assert balance.holdings[0].average_price == Decimal("71500.5000")
    assert balance.summary.cash == 1_000_003
    assert len(balance.open_positions) == 3


async def test_paging_stops_at_the_max_pages_guard(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/inquire-balance", lambda r: balance_page(1, False))
    async with client_for(fake, clock, max_pages=4) as client:
        with pytest.raises(KisOperational, match="more than 4 pages"):
            await client.get_balance()
    assert len(fake.calls("/inquire-balance")) == 4


async def test_daily_orders_pick_tr_by_window_and_type_rows(fake: FakeKis, clock: FixedClock) -> None:
    row = {
        "ord_dt": "20260710", "ord_gno_brno": "00950", "odno": "0000117057", "orgn_odno": "",
        "sll_buy_dvsn_cd": "02", "pdno": "005930", "prdt_name": "삼성전자", "ord_qty": "10", "ord_unpr": "71900",
        "ord_tmd": "100001", "tot_ccld_qty": "4", "avg_prvs": "71900", "cncl_yn": "N", "tot_ccld_amt": "287600",
        "ord_dvsn_cd": "00", "rmn_qty": "6", "rjct_qty": "0", "excg_id_dvsn_Cd": "KRX",
    }  # fmt: skip
    pages = iter([
        ok(tr_cont="M", output1=[row], output2={"tot_ord_qty": "10"}, ctx_area_fk100="a", ctx_area_nk100="b"),
        ok(tr_cont="E", output1=[], output2={"tot_ord_qty": "10", "tot_ccld_qty": "4", "tot_ccld_amt": "287600"},
           ctx_area_fk100="", ctx_area_nk100=""),
    ])  # fmt: skip
    fake.route("/inquire-daily-ccld", lambda r: next(pages))
    async with client_for(fake, clock) as client:
        recent = await client.get_daily_orders(date(2026, 7, 10))
        fake.route("/inquire-daily-ccld", lambda r: ok(tr_cont="D", output1=[], output2={}))
        await client.get_daily_orders(date(2026, 1, 2), date(2026, 1, 30))
    calls = fake.calls("/inquire-daily-ccld")
    assert calls[0].headers["tr_id"] == "VTTC0081R"
    assert calls[-1].headers["tr_id"] == "VTSC9215R"
    order = recent.orders[0]
    assert order.side == "buy" and order.filled_quantity == 4 and order.remaining_quantity == 6
    assert order.average_fill_price == Decimal(71900)
    assert order.ordered_at is not None and order.ordered_at.isoformat() == "2026-07-10T10:00:01+09:00"
    assert recent.summary.total_filled_amount == 287600


def daily_chart_server(days: list[date]) -> Handler:
    """FHKST03010100 semantics: rows between DATE_1 and DATE_2, newest first, at most 100."""

    def handle(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        lo = datetime.strptime(params["FID_INPUT_DATE_1"], "%Y%m%d").date()
        hi = datetime.strptime(params["FID_INPUT_DATE_2"], "%Y%m%d").date()
        rows = [
            {"stck_bsop_date": d.strftime("%Y%m%d"), "stck_oprc": "100", "stck_hgpr": "110", "stck_lwpr": "90",
             "stck_clpr": str(100 + i % 7), "acml_vol": "1000", "acml_tr_pbmn": "100000", "mod_yn": "N"}
            for i, d in enumerate(days) if lo <= d <= hi
        ][::-1][:100]  # fmt: skip
        return ok(output1={"hts_kor_isnm": "삼성전자"}, output2=[*rows, {}])

    return handle


async def test_daily_bars_are_paged_backwards_until_the_range_is_covered(fake: FakeKis, clock: FixedClock) -> None:
    days = [
        date(2025, 1, 1) + timedelta(days=i) for i in range(400) if (date(2025, 1, 1) + timedelta(days=i)).weekday() < 5
    ]
    fake.route("/inquire-daily-itemchartprice", daily_chart_server(days))
    async with client_for(fake, clock) as client:
        bars = await client.get_daily_bars("005930", date(2025, 1, 1), date(2026, 2, 4))
    assert [b.date for b in bars] == days
    calls = fake.calls("/inquire-daily-itemchartprice")
    assert len(calls) == 3
    assert calls[0].url.params["FID_INPUT_DATE_2"] == "20260204"
    assert calls[1].url.params["FID_INPUT_DATE_2"] == (days[-100] - timedelta(days=1)).strftime("%Y%m%d")
    assert calls[0].url.params["FID_PERIOD_DIV_CODE"] == "D" and calls[0].url.params["FID_ORG_ADJ_PRC"] == "0"
    assert bars[0].close == 100 and isinstance(bars[0].volume, int)


async def test_minute_bars_are_paged_backwards_30_at_a_time(fake: FakeKis, clock: FixedClock) -> None:
    minutes = [time(9, m) for m in range(60)] + [time(10, 0)]

    def handle(request: httpx.Request) -> httpx.Response:
        upto = datetime.strptime(request.url.params["FID_INPUT_HOUR_1"], "%H%M%S").time()
        rows = [
            {"stck_bsop_date": "20260710", "stck_cntg_hour": t.strftime("%H%M%S"), "stck_prpr": "71900",
             "stck_oprc": "71800", "stck_hgpr": "72000", "stck_lwpr": "71700", "cntg_vol": "120",
             "acml_tr_pbmn": "1000"}
            for t in minutes if t <= upto
        ][::-1][:30]  # fmt: skip
        return ok(output1={"stck_prpr": "71900"}, output2=rows)

    fake.route("/inquire-time-itemchartprice", handle)
    async with client_for(fake, clock) as client:
        bars = await client.get_minute_bars("005930")
    assert [b.time for b in bars] == minutes
    assert bars[0].at.isoformat() == "2026-07-10T09:00:00+09:00"
    calls = fake.calls("/inquire-time-itemchartprice")
    assert [c.url.params["FID_INPUT_HOUR_1"] for c in calls[:3]] == ["100000", "093000", "090000"]
    assert calls[0].headers["tr_id"] == "FHKST03010200"


async def test_order_book_and_buying_power(fake: FakeKis, clock: FixedClock) -> None:
    book = {"aspr_acpt_hour": "100005", "total_askp_rsqn": "5000", "total_bidp_rsqn": "7000"}
    for i in range(1, 11):
        book |= {f"askp{i}": str(71900 + 100 * i), f"bidp{i}": str(71900 - 100 * (i - 1)),
                 f"askp_rsqn{i}": str(i * 10), f"bidp_rsqn{i}": str(i * 20)}  # fmt: skip
    expected = {"stck_prpr": "71900", "antc_cnpr": "0", "antc_vol": "0", "stck_shrn_iscd": "005930"}
    fake.route("/inquire-asking-price-exp-ccn", lambda r: ok(output1=book, output2=expected))
    fake.route(
        "/inquire-psbl-order", lambda r: ok({"ord_psbl_cash": "10000000", "max_buy_qty": "139", "nrcvb_buy_qty": "139"})
    )
    async with client_for(fake, clock) as client:
        snapshot = await client.get_order_book("005930")
        power = await client.get_buying_power("005930")
    assert snapshot.asks[0].price == 72000 and snapshot.bids[0].price == 71900
    assert snapshot.bids[9].quantity == 200 and len(snapshot.asks) == 10
    assert snapshot.at is not None and snapshot.at.isoformat() == "2026-07-10T10:00:05+09:00"
    assert power.orderable_cash == 10_000_000 and power.max_buy_quantity == 139
    psbl = fake.calls("/inquire-psbl-order")[0]
    assert psbl.headers["tr_id"] == "VTTC8908R" and psbl.url.params["ORD_DVSN"] == "01"


async def test_hashkey_header_when_enabled(fake: FakeKis, clock: FixedClock) -> None:
    fake.route("/uapi/hashkey", lambda r: httpx.Response(200, json={"BODY": json.loads(r.content), "HASH": "ab" * 32}))
    fake.route("/order-cash", lambda r: ok(ORDER_OUTPUT))
    async with client_for(fake, clock, use_hashkey=True) as client:
        await client.buy("005930", 1, 71900)
    hashed = json.loads(fake.calls("/uapi/hashkey")[0].content)
    assert hashed == json.loads(fake.calls("/order-cash")[0].content)
    assert fake.calls("/order-cash")[0].headers["hashkey"] == "ab" * 32


async def test_revoke_drops_the_token(fake: FakeKis, clock: FixedClock) -> None:
    fake.route(
        "/oauth2/revokeP",
        lambda r: httpx.Response(200, json={"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}),
    )
    fake.route("/inquire-price", lambda r: ok(PRICE_OUTPUT))
    store = MemoryTokenStore()
    async with client_for(fake, clock, store) as client:
        await client.get_quote("005930")
        await client.revoke_token()
        assert json.loads(fake.calls("/revokeP")[0].content)["token"] == "token-1"
        clock.advance(timedelta(minutes=2))
        await client.get_quote("005930")
    assert len(fake.issued) == 2


async def test_credentials_never_reach_logs_errors_or_reprs(
    fake: FakeKis, clock: FixedClock, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    secrets = [APPKEY, APPSECRET, CANO, HTS_ID, "token-1", "token-2"]
    answers = [
        fail("EGW00123", "기간이 만료된 token 입니다.", status=500),
        fail("EGW00201", "초당 거래건수를 초과하였습니다.", status=500),
        ok(PRICE_OUTPUT),
    ]
    fake.route("/inquire-price", lambda r: answers.pop(0))

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    fake.route("/order-cash", hang)
    fake.route("/inquire-balance", lambda r: fail("OPSQ2000", "ERROR : INPUT INVALID_CHECK_ACNO"))
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        client = KisClient(
            make_settings(token_cache_path=tmp_path / "tokens.json"),
            http=httpx.AsyncClient(transport=httpx.MockTransport(fake)),
            clock=clock,
        )
        async with client:
            clock.advance(timedelta(minutes=2))
            await client.get_quote("005930")
            for call in (lambda: client.buy("005930", 1, 71900), client.get_balance):
                with pytest.raises(Exception) as caught:  # noqa: PT011 — any error: its text is what is checked
                    await call()
                texts += [str(caught.value), repr(caught.value), str(caught.value.to_body())]  # type: ignore[attr-defined]
        texts += [repr(client), repr(client.settings), str(client.settings.model_dump())]
    texts += [repr(entry) for entry in logs] + [record.getMessage() for record in caplog.records]
    assert any(entry["event"] == "kis.token_issued" for entry in logs)
    assert any(entry["event"] == "kis.rate_limited" for entry in logs)
    for secret in secrets:
        assert not [t for t in texts if secret in t], f"a credential leaked: {secret[:4]}…"
