"""Compatibility: python-kis (PK, PyPI 2.1.6), unchanged, against the simulator.

PK reads its endpoints from module constants (``pykis.__env__`` and the modules that imported
them by name); the test points those constants at the simulator and runs PK in paper mode, the
way PK users run it: quotes and charts on the real domain with the real key, orders, balance and
notices on the paper domain. PK is synchronous, so its calls run in a worker thread while the
simulator serves on the event loop.

Known disagreements, both on PK's side (kis-api.md wins):
* PK 2.1.6 ``domestic_balance`` sends INQR_DVSN=02, refused by the live server since 2026-02-10
  (kis-api.md §4.7, PK #81, fixed upstream by PR #82). The test pins that refusal, then drives
  PK's own request and response classes with INQR_DVSN=01.
* PK cannot parse the live 26-field H0STCNI9 notice (PK #68, #80); this test runs the simulator
  with the legacy ``notice_layout=23`` switch for the notice part.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta

# python-kis is a test-only dependency (requirements-dev.txt): scripts/run_tests.sh installs it.
import pytest
from pykis import KisAuth, PyKis
from pykis.api.account.balance import KisDomesticBalance
from pykis.api.account.order import domestic_order
from pykis.api.stock.daily_chart import domestic_daily_chart
from pykis.api.stock.quote import domestic_quote
from pykis.api.websocket.order_execution import on_execution as on_execution_event
from pykis.client.exceptions import KisAPIError
from pykis.client.page import KisPage
from pykis.event.handler import KisEventTicket

from common.clock import KST, FixedClock, to_kst
from common.kis.sim import dev_account

# PK's event tickets unsubscribe over the network from their finalizers, on whichever thread the
# garbage collector runs: on the event loop serving the simulator (a deadlock) or after it stopped
# (an unraisable error in some later test). The ticket this test takes is unsubscribed explicitly;
# PK's finalizer is silenced for the tickets it keeps internally. pykis is used only here.
KisEventTicket.__del__ = lambda self: None  # type: ignore[method-assign]

REAL = dev_account("real")
PAPER = dev_account("paper")


def next_monday_10am() -> datetime:
    """A simulated Monday 10:00 KST comfortably in the future: PK compares token expiry with its own clock."""
    day = datetime.now(KST).date() + timedelta(days=400)
    day += timedelta(days=(7 - day.weekday()) % 7)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=KST)


@pytest.fixture
def pk_endpoints(monkeypatch):
    """Point PK's domain constants at a simulator; returns a function taking the running simulator."""
    import pykis.__env__ as env
    import pykis.client.websocket as pk_websocket
    import pykis.kis as pk_kis

    def point(sim) -> None:
        for module in (env, pk_kis):
            monkeypatch.setattr(module, "REAL_DOMAIN", sim.real.rest_url, raising=False)
            monkeypatch.setattr(module, "VIRTUAL_DOMAIN", sim.paper.rest_url, raising=False)
        for module in (env, pk_websocket):
            monkeypatch.setattr(module, "WEBSOCKET_REAL_DOMAIN", sim.real.ws_url, raising=False)
            monkeypatch.setattr(module, "WEBSOCKET_VIRTUAL_DOMAIN", sim.paper.ws_url, raising=False)

    return point


def make_pykis() -> PyKis:
    real_auth = KisAuth(
        id=REAL.hts_id,
        account=f"{PAPER.cano}-{PAPER.acnt_prdt_cd}",
        appkey=REAL.appkey,
        secretkey=REAL.appsecret.get_secret_value(),
        virtual=False,
    )
    paper_auth = KisAuth(
        id=PAPER.hts_id,
        account=f"{PAPER.cano}-{PAPER.acnt_prdt_cd}",
        appkey=PAPER.appkey,
        secretkey=PAPER.appsecret.get_secret_value(),
        virtual=True,
    )
    return PyKis(real_auth, paper_auth, keep_token=False)


def balance_with_inqr_dvsn_01(kis: PyKis) -> KisDomesticBalance:
    """PK's own request and response types, with the INQR_DVSN value the live server accepts."""
    account = kis.primary
    return kis.fetch(
        "/uapi/domestic-stock/v1/trading/inquire-balance",
        api="VTTC8434R",
        params={
            "AFHR_FLPR_YN": "N",
            "OFL_YN": "",
            "INQR_DVSN": "01",
            "UNPR_DVSN": "01",
            "FUND_STTL_ICLD_YN": "Y",
            "FNCG_AMT_AUTO_RDPT_YN": "N",
            "PRCS_DVSN": "00",
        },
        form=[account, KisPage.first().to(100)],
        response_type=KisDomesticBalance(account_number=account),
    )


@pytest.mark.filterwarnings("ignore:Event ticket:UserWarning")  # PK's own overseas-notice ticket
async def test_python_kis_quote_chart_order_fill_and_balance(start_sim, pk_endpoints):
    clock = FixedClock(next_monday_10am())
    today = to_kst(clock.now()).date()
    async with start_sim(clock, notice_layout=23, paper_rest_per_second=1.0, real_rest_per_second=18.0) as sim:
        pk_endpoints(sim)
        kis = await asyncio.to_thread(make_pykis)
        try:
            quote = await asyncio.to_thread(domestic_quote, kis, "005930")
            expected = sim.market.quote("005930", clock.now())
            assert int(quote.price) == expected.price
            assert int(quote.base_price) == expected.base
            assert int(quote.high_limit) == expected.limits[1]

            start = today - timedelta(days=200)
            chart = await asyncio.to_thread(domestic_daily_chart, kis, "005930", start, today)
            weekdays = sum(1 for n in range(201) if (start + timedelta(days=n)).weekday() < 5)
            assert len(chart.bars) == weekdays  # two pages of 100 rows, then one more
            assert chart.bars[-1].time.date() == today
            assert int(chart.bars[-1].close) == expected.price

            events: list[object] = []
            seen = threading.Event()

            def on_execution(_sender, args) -> None:
                events.append(args.response)
                seen.set()

            ticket = await asyncio.to_thread(on_execution_event, kis.websocket, on_execution)
            await asyncio.to_thread(wait_subscribed, sim, PAPER.appkey)

            order = await asyncio.to_thread(domestic_order, kis, kis.primary, "005930", "buy", None, 3)
            assert len(order.number) == 10 and int(order.number) > 0
            assert order.branch == "00950"
            assert await asyncio.to_thread(seen.wait, 5)

            clock.advance(timedelta(minutes=10))
            account = sim.exchange.account(PAPER.appkey)
            for _ in range(100):
                if sum(f.qty for f in account.fills) == 3 and len(events) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert sum(f.qty for f in account.fills) == 3
            fills = [e for e in events if int(getattr(e, "executed_quantity", 0)) and not e.rejected]
            assert fills, f"no fill notice parsed by PK: {events}"
            assert all(e.symbol == "005930" for e in events)
            ticket.unsubscribe()

            with pytest.raises(KisAPIError) as refused:
                await asyncio.to_thread(kis.account().balance, "KR")
            assert refused.value.msg_cd == "OPSQ2001"

            balance = await asyncio.to_thread(balance_with_inqr_dvsn_01, kis)
            held = {stock.symbol: int(stock.qty) for stock in balance.stocks}
            assert held == {"005930": 3}
            assert int(balance.deposits["KRW"].amount) == account.cash
        finally:
            await asyncio.to_thread(close_pykis, kis)


def wait_subscribed(sim, appkey: str) -> None:
    for _ in range(100):
        if any(s.appkey == appkey and s.subscriptions for s in sim.hub.sessions):
            return
        threading.Event().wait(0.05)
    raise AssertionError("PK never subscribed to the notice stream")


def close_pykis(kis: PyKis) -> None:
    websocket = kis.websocket
    primary = websocket._primary_client  # PK keeps the paper socket in a second client
    websocket.disconnect()
    if primary is not None:
        primary.disconnect()
    kis.close()

