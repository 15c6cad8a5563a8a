"""KisWebSocket against an in-test websockets server on 127.0.0.1, and the frame parser."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import structlog
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve

from common.clock import SystemClock
from common.errors import Rejected
from common.kis import (
    Connected,
    Disconnected,
    ExecutionNotice,
    KisEvent,
    KisSettings,
    KisWebSocket,
    MalformedFrame,
    OrderBookUpdate,
    Reconnecting,
    SubscriptionFailed,
    SubscriptionLimitExceeded,
    TradeTick,
)
from common.kis.crypto import aes_cbc_base64_decrypt, aes_cbc_base64_encrypt
from common.kis.realtime import FrameError, parse_data_frame
from common.kis.websocket import ReconnectBackoff

# kis-api.md §5.6, the workbook example (46 fields).
TRADE = (
    "005930^093354^71900^5^-100^-0.14^72023.83^72100^72400^71700^71900^71800^1^3052507^219853241700^5105^6937^1832"
    "^84.90^1366314^1159996^1^0.39^20.28^090020^5^-200^090820^5^-500^092619^2^200^20230612^20^N^65945^216924"
    "^1118750^2199206^0.05^2424142^125.92^0^^72100"
)
BOOK = "^".join(
    ["005930", "093354", "0"]
    + [str(71900 + 100 * i) for i in range(10)]  # 3-12 ASKP1..10
    + [str(71800 - 100 * i) for i in range(10)]  # 13-22 BIDP1..10
    + [str(1000 + i) for i in range(10)]  # 23-32 ASKP_RSQN
    + [str(2000 + i) for i in range(10)]  # 33-42 BIDP_RSQN
    + ["1118750", "2199206", "0", "0", "71900", "1500", "3000", "-100", "5", "-0.14", "3052507", "120", "-80", "0", "0"]
    + ["0"]  # 58 STCK_DEAL_CLS_CODE
)
HTS_ID = "htsuser77"
ACCOUNT = "7331004401"
AES_KEY = "k" * 16 + "0123456789abcdef"
AES_IV = "iv0123456789abcd"
NOTICE_26 = "^".join(
    [HTS_ID, ACCOUNT, "0000117057", "", "02", "0", "00", "0", "005930", "10", "71900", "100001", "0", "2", "2",
     "00950", "10", "홍길동", "0", "1", "N", "", "10", "", "삼성전자", "71900"]
)  # fmt: skip
NOTICE_23 = "^".join(
    [HTS_ID, ACCOUNT, "0000117058", "", "01", "0", "00", "0", "005930", "5", "72000", "100502", "0", "1", "1",
     "00950", "5", "홍길동", "삼성전자", "10", "", "삼성전자", "72000"]
)  # fmt: skip
NOW = datetime(2026, 7, 10, 1, 0, tzinfo=UTC)


# --- parsing -----------------------------------------------------------------------------------


def test_trade_frame_with_two_records_yields_46_typed_fields_each() -> None:
    ticks = parse_data_frame(f"0|H0STCNT0|002|{TRADE}^{TRADE.replace('093354', '093355', 1)}", {}, NOW)
    assert len(ticks) == 2
    tick = ticks[0]
    assert isinstance(tick, TradeTick)
    assert len(TradeTick.__dataclass_fields__) == 46 + 1  # + received_at
    assert tick.mksc_shrn_iscd == "005930" and tick.stck_prpr == 71900
    assert tick.prdy_vrss == -100 and tick.prdy_ctrt == Decimal("-0.14")
    assert tick.wghn_avrg_stck_prc == Decimal("72023.83") and tick.cntg_vol == 1 and tick.acml_vol == 3052507
    assert tick.cttr == Decimal("84.90") and tick.ccld_dvsn == "1"
    assert tick.oprc_hour == time(9, 0, 20) and tick.lwpr_vrss_prpr == 200
    assert tick.bsop_date == date(2023, 6, 12) and tick.trht_yn is False
    assert tick.prdy_smns_hour_acml_vol_rate == Decimal("125.92")
    assert tick.hour_cls_code == "0" and tick.mrkt_trtm_cls_code == "" and tick.vi_stnd_prc == 72100
    assert tick.traded_at is not None and tick.traded_at.isoformat() == "2023-06-12T09:33:54+09:00"
    assert isinstance(ticks[1], TradeTick) and ticks[1].stck_cntg_hour == time(9, 33, 55)


def test_book_frame_yields_59_fields() -> None:
    assert len(BOOK.split("^")) == 59
    (book,) = parse_data_frame(f"0|H0STASP0|001|{BOOK}", {}, NOW)
    assert isinstance(book, OrderBookUpdate)
    assert book.askp[0] == 71900 and book.askp[9] == 72800
    assert book.bidp[0] == 71800 and book.bidp_rsqn[9] == 2009
    assert book.total_askp_rsqn == 1118750 and book.antc_cnpr == 71900
    assert book.antc_cntg_prdy_ctrt == Decimal("-0.14") and book.acml_vol == 3052507
    assert book.total_bidp_rsqn_icdc == -80 and book.stck_deal_cls_code == "0"


@pytest.mark.parametrize(("plain", "layout"), [(NOTICE_26, 26), (NOTICE_23, 23)])
def test_notice_is_decrypted_with_the_ack_key(plain: str, layout: int) -> None:
    from common.kis.realtime import AesKey

    cipher = aes_cbc_base64_encrypt(AES_KEY, AES_IV, plain)
    assert aes_cbc_base64_decrypt(AES_KEY, AES_IV, cipher) == plain
    (notice,) = parse_data_frame(f"1|H0STCNI9|001|{cipher}", {"H0STCNI9": AesKey(AES_KEY, AES_IV)}, NOW)
    assert isinstance(notice, ExecutionNotice)
    assert notice.layout == layout and notice.acnt_no == ACCOUNT
    assert notice.cntg_isnm40 == "삼성전자" and notice.stck_shrn_iscd == "005930"
    if layout == 26:
        assert notice.is_fill and notice.side == "buy" and notice.cntg_qty == 10 and notice.oder_prc == 71900
        assert notice.ord_exg_gb == "1" and notice.stck_cntg_hour == time(10, 0, 1)
    else:
        assert not notice.is_fill and notice.side == "sell" and notice.oder_prc == 72000
    assert ACCOUNT not in repr(notice) and HTS_ID not in repr(notice) and "홍길동" not in repr(notice)


@pytest.mark.parametrize(
    "frame",
    [
        f"0|H0STCNT0|001|{TRADE}^extra",
        f"0|H0STCNT0|002|{TRADE}",
        f"0|H0STASP0|001|{BOOK}^1^2^3",
        "1|H0STCNI0|001|bm90LWVuY3J5cHRlZA==",
        "0|H0STCNT0|abc|x",
    ],
)
def test_frames_that_do_not_match_their_layout_are_refused(frame: str) -> None:
    with pytest.raises(FrameError):
        parse_data_frame(frame, {}, NOW)


# --- a scripted server -------------------------------------------------------------------------


@dataclass
class FakeServer:
    """Acks registrations like KIS (key/iv for notices), records what clients send."""

    port: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    connections: list[ServerConnection] = field(default_factory=list)
    refuse: dict[str, tuple[str, str]] = field(default_factory=dict)  # tr_key -> (msg_cd, msg1)

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.paths.append(ws.request.path if ws.request else "")
        async for message in ws:
            assert isinstance(message, str)
            self.raw.append(message)
            data = json.loads(message)
            if data.get("header", {}).get("tr_id") == "PINGPONG":
                continue
            self.messages.append(data)
            tr = data["body"]["input"]
            notice = tr["tr_id"].startswith("H0STCNI")
            if tr["tr_key"] in self.refuse:
                msg_cd, msg1 = self.refuse[tr["tr_key"]]
                body: dict[str, Any] = {"rt_cd": "1", "msg_cd": msg_cd, "msg1": msg1}
            elif data["header"]["tr_type"] == "2":
                body = {"rt_cd": "0", "msg_cd": "OPSP0001", "msg1": "UNSUBSCRIBE SUCCESS"}
            else:
                body = {"rt_cd": "0", "msg_cd": "OPSP0000", "msg1": "SUBSCRIBE SUCCESS",
                        "output": {"iv": AES_IV, "key": AES_KEY} if notice else {"iv": "", "key": ""}}  # fmt: skip
            header = {"tr_id": tr["tr_id"], "tr_key": tr["tr_key"], "encrypt": "Y" if notice else "N"}
            await ws.send(json.dumps({"header": header, "body": body}))

    async def broadcast(self, text: str) -> None:
        await self.connections[-1].send(text)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    async with serve(fake.handler, "127.0.0.1", 0) as ws_server:
        fake.port = ws_server.sockets[0].getsockname()[1]
        yield fake


def ws_settings(port: int, **overrides: Any) -> KisSettings:
    return KisSettings(
        domain="paper",
        paper_ws_url=f"ws://127.0.0.1:{port}",
        appkey=SecretStr("PSVTwstestappkey0123456789abcdefghij"),
        appsecret=SecretStr("W" * 180),
        hts_id=SecretStr(HTS_ID),
        ws_reconnect_initial_seconds=0.05,
        ws_reconnect_max_seconds=0.2,
        ws_ack_timeout_seconds=2.0,
        **overrides,
    )


class Approvals:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        return f"approval-key-{self.count}"


E = TypeVar("E")


async def next_event(ws: KisWebSocket, kind: type[E], timeout: float = 5.0) -> E:
    async def wait() -> E:
        async for event in ws:
            if isinstance(event, kind):
                return event
        raise AssertionError("stream ended")

    return await asyncio.wait_for(wait(), timeout)


async def open_ws(port: int, **overrides: Any) -> KisWebSocket:
    ws = KisWebSocket(ws_settings(port, **overrides), Approvals(), clock=SystemClock())
    await ws.start()
    await ws.wait_connected(5)
    return ws


async def test_subscribe_sends_kis_message_to_tryitout_and_yields_ticks(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        await ws.subscribe_trades("005930")
        await ws.subscribe_book("005930")
        first = server.messages[0]
        assert first["header"] == {
            "approval_key": "approval-key-1", "custtype": "P", "tr_type": "1", "content-type": "utf-8"
        }  # fmt: skip
        assert first["body"] == {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}}
        assert server.paths == ["/tryitout"]
        await server.broadcast(f"0|H0STCNT0|002|{TRADE}^{TRADE}")
        await server.broadcast(f"0|H0STASP0|001|{BOOK}")
        connected = await next_event(ws, Connected)
        assert connected.gap_since is None
        ticks = [await next_event(ws, TradeTick), await next_event(ws, TradeTick)]
        assert [t.stck_prpr for t in ticks] == [71900, 71900]
        book = await next_event(ws, OrderBookUpdate)
        assert book.askp[0] == 71900
    finally:
        await ws.close()


async def test_fill_notice_is_decrypted_with_the_key_from_its_ack(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        await ws.subscribe_notices()
        assert server.messages[0]["body"]["input"] == {"tr_id": "H0STCNI9", "tr_key": HTS_ID}
        await server.broadcast(f"1|H0STCNI9|001|{aes_cbc_base64_encrypt(AES_KEY, AES_IV, NOTICE_26)}")
        notice = await next_event(ws, ExecutionNotice)
        assert notice.oder_no == "0000117057" and notice.is_fill and notice.cntg_unpr == 71900
    finally:
        await ws.close()


async def test_pingpong_is_echoed_as_text(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        ping = json.dumps({"header": {"tr_id": "PINGPONG", "datetime": "20260710100000"}})
        await server.broadcast(ping)
        for _ in range(100):
            if ping in server.raw:
                break
            await asyncio.sleep(0.02)
        assert ping in server.raw
    finally:
        await ws.close()


async def test_the_42nd_registration_is_refused_client_side(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        for n in range(41):
            await ws.subscribe_trades(f"{n:06d}")
        with pytest.raises(SubscriptionLimitExceeded, match="41") as caught:
            await ws.subscribe_trades("999999")
        assert isinstance(caught.value, Rejected)
        assert len(server.messages) == 41
        await ws.unsubscribe("H0STCNT0", "000000")
        assert server.messages[-1]["header"]["tr_type"] == "2"
        await ws.subscribe_trades("999999")
        assert len(ws.subscriptions) == 41
    finally:
        await ws.close()


async def test_refused_registration_raises_with_msg_cd(server: FakeServer) -> None:
    server.refuse["000660"] = ("OPSP0008", "MAX SUBSCRIBE OVER")
    server.refuse["035720"] = ("OPSP0007", "SUBSCRIBE ERROR")
    ws = await open_ws(server.port)
    try:
        with pytest.raises(SubscriptionLimitExceeded) as full:
            await ws.subscribe_trades("000660")
        with pytest.raises(Rejected) as other:
            await ws.subscribe_trades("035720")
        assert full.value.msg_cd == "OPSP0008"
        assert getattr(other.value, "msg_cd", None) == "OPSP0007"
        assert ws.subscriptions == ()
    finally:
        await ws.close()


async def test_reconnects_after_a_drop_and_resubscribes_everything(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        await ws.subscribe_trades("005930")
        await ws.subscribe_notices()
        await next_event(ws, Connected)
        await server.connections[-1].close()
        dropped = await next_event(ws, Disconnected)
        again = await next_event(ws, Connected)
        assert again.gap_since is not None and again.gap_since >= dropped.at
        assert {s.tr_id for s in again.resubscribed} == {"H0STCNT0", "H0STCNI9"}
        assert len(server.connections) == 2 and ws.reconnects == 1
        assert [m["body"]["input"]["tr_id"] for m in server.messages] == ["H0STCNT0", "H0STCNI9"] * 2
        # The new session's notice key is in place.
        await server.broadcast(f"1|H0STCNI9|001|{aes_cbc_base64_encrypt(AES_KEY, AES_IV, NOTICE_23)}")
        assert (await next_event(ws, ExecutionNotice)).layout == 23
    finally:
        await ws.close()


async def test_malformed_frames_are_reported_and_the_stream_goes_on(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        await ws.subscribe_trades("005930")
        await server.broadcast(f"0|H0STCNT0|001|{TRADE}^x")
        await server.broadcast(f"0|H0STCNT0|001|{TRADE}")
        bad = await next_event(ws, MalformedFrame)
        assert bad.tr_id == "H0STCNT0"
        assert (await next_event(ws, TradeTick)).stck_prpr == 71900
    finally:
        await ws.close()


async def test_resubscription_refused_after_reconnect_is_reported(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    try:
        await ws.subscribe_trades("005930")
        server.refuse["005930"] = ("OPSP0007", "SUBSCRIBE ERROR")
        await server.connections[-1].close()
        failed = await next_event(ws, SubscriptionFailed)
        assert failed.subscription.tr_key == "005930" and failed.msg_cd == "OPSP0007"
        assert ws.subscriptions == ()
    finally:
        await ws.close()


async def test_close_ends_the_event_stream(server: FakeServer) -> None:
    ws = await open_ws(server.port)
    await ws.close()
    events: list[KisEvent] = [event async for event in ws]
    assert all(isinstance(e, Connected | Disconnected) for e in events)


async def test_hts_id_and_approval_key_stay_out_of_logs(server: FakeServer) -> None:
    with structlog.testing.capture_logs() as logs:
        ws = await open_ws(server.port)
        try:
            await ws.subscribe_notices()
            await server.connections[-1].close()
            await next_event(ws, Disconnected)
            await next_event(ws, Connected)
        finally:
            await ws.close()
    text = " ".join(repr(entry) for entry in logs) + repr(ws) + repr(ws.subscriptions)
    assert "kis.ws_connected" in text
    assert HTS_ID not in text and "approval-key" not in text


def test_reconnect_waits_double_to_the_cap_with_jitter_and_start_over_only_when_reset() -> None:
    backoff = ReconnectBackoff(1.0, 60.0)
    waits = [backoff.next_delay() for _ in range(10)]
    steps = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert all(step / 2 <= wait <= step for wait, step in zip(waits, steps, strict=True))
    assert sum(waits[:5]) >= 15.5  # at most six attempts in the first 15 seconds of a refusal
    backoff.reset()
    assert backoff.next_delay() <= 1.0


async def test_a_refused_approval_key_is_reported_and_retried_not_left_hanging(server: FakeServer) -> None:
    refusals = 2

    class RefusingApprovals(Approvals):
        async def __call__(self) -> str:
            self.count += 1
            if self.count <= refusals:
                raise Rejected("approval refused: EGW00103 invalid appkey")
            return f"approval-key-{self.count}"

    ws = KisWebSocket(ws_settings(server.port), RefusingApprovals(), clock=SystemClock())
    await ws.start()
    try:
        waiting = await next_event(ws, Reconnecting)
        assert "EGW00103" in waiting.reason or "Rejected" in waiting.reason
        await ws.wait_connected(5)  # the key works again (rotated credentials): the session opens
    finally:
        await ws.close()
