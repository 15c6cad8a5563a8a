"""Fixtures for the KIS simulator tests: a running simulator on free loopback ports, and a thin client.

The market clock is a ``FixedClock`` on a Monday at 10:00 KST, so prices and fills are
deterministic; tests move it with ``sim.clock.advance``. Limits that would slow every test
(paper 1 call/s, one new token a minute) are relaxed here and pinned by their own tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest

from common.clock import KST, FixedClock
from common.kis.sim import (
    RunningSimulator,
    SimAccount,
    SimulatorSettings,
    dev_account,
    in_process_settings,
    serve_simulator,
)

MONDAY_10AM = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
REAL = dev_account("real")
PAPER = dev_account("paper")


def sim_settings(**overrides: Any) -> SimulatorSettings:
    return in_process_settings(**{"seed": 7, **overrides})


@dataclass
class KisClient:
    """Speaks the KIS REST conventions to one domain of the simulator (headers, token, tr_id)."""

    http: httpx.AsyncClient
    account: SimAccount
    token: str = ""
    last_headers: dict[str, str] = field(default_factory=dict)

    @property
    def secret(self) -> str:
        return self.account.appsecret.get_secret_value()

    async def issue_token(self) -> httpx.Response:
        body = {"grant_type": "client_credentials", "appkey": self.account.appkey, "appsecret": self.secret}
        return await self.http.post("/oauth2/tokenP", json=body)

    async def login(self) -> str:
        response = await self.issue_token()
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]
        return self.token

    async def approval_key(self) -> str:
        body = {"grant_type": "client_credentials", "appkey": self.account.appkey, "secretkey": self.secret}
        response = await self.http.post("/oauth2/Approval", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["approval_key"])

    def headers(self, tr_id: str, tr_cont: str = "", **extra: str) -> dict[str, str]:
        return {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {self.token}",
            "appkey": self.account.appkey,
            "appsecret": self.secret,
            "tr_id": tr_id,
            "custtype": "P",
            "tr_cont": tr_cont,
            **extra,
        }

    async def get(self, path: str, tr_id: str, params: dict[str, str], tr_cont: str = "") -> httpx.Response:
        return await self.http.get(
            f"/uapi/domestic-stock/v1/{path}", params=params, headers=self.headers(tr_id, tr_cont)
        )

    async def post(self, path: str, tr_id: str, body: dict[str, str]) -> httpx.Response:
        return await self.http.post(f"/uapi/domestic-stock/v1/{path}", json=body, headers=self.headers(tr_id))

    async def order(self, tr_id: str, code: str, qty: int, price: int = 0, division: str = "01") -> httpx.Response:
        body = {
            "CANO": self.account.cano,
            "ACNT_PRDT_CD": self.account.acnt_prdt_cd,
            "PDNO": code,
            "ORD_DVSN": division,
            "ORD_QTY": str(qty),
            "ORD_UNPR": str(price),
        }
        return await self.post("trading/order-cash", tr_id, body)

    async def balance(self, tr_id: str, tr_cont: str = "", fk: str = "", nk: str = "") -> httpx.Response:
        params = {
            "CANO": self.account.cano,
            "ACNT_PRDT_CD": self.account.acnt_prdt_cd,
            "AFHR_FLPR_YN": "N",
            "OFL_YN": "",
            "INQR_DVSN": "01",
            "UNPR_DVSN": "01",
            "FUND_STTL_ICLD_YN": "N",
            "FNCG_AMT_AUTO_RDPT_YN": "N",
            "PRCS_DVSN": "00",
            "CTX_AREA_FK100": fk,
            "CTX_AREA_NK100": nk,
        }
        return await self.get("trading/inquire-balance", tr_id, params, tr_cont)

    async def daily_ccld(self, tr_id: str, day: str, tr_cont: str = "", fk: str = "", nk: str = "",
                         **overrides: str) -> httpx.Response:
        params = {
            "CANO": self.account.cano,
            "ACNT_PRDT_CD": self.account.acnt_prdt_cd,
            "INQR_STRT_DT": day,
            "INQR_END_DT": day,
            "SLL_BUY_DVSN_CD": "00",
            "INQR_DVSN": "00",
            "PDNO": "",
            "CCLD_DVSN": "00",
            "ORD_GNO_BRNO": "",
            "ODNO": "",
            "INQR_DVSN_3": "00",
            "INQR_DVSN_1": "",
            "EXCG_ID_DVSN_CD": "KRX",
            "CTX_AREA_FK100": fk,
            "CTX_AREA_NK100": nk,
            **overrides,
        }
        return await self.get("trading/inquire-daily-ccld", tr_id, params, tr_cont)


SimFactory = Callable[..., AbstractAsyncContextManager[RunningSimulator]]
ClientFactory = Callable[..., AbstractAsyncContextManager[KisClient]]


@pytest.fixture
def start_sim() -> SimFactory:
    """``start_sim(clock=None, **settings)``: a simulator with the test defaults overridden."""

    def start(clock: Any = None, **overrides: Any) -> AbstractAsyncContextManager[RunningSimulator]:
        return serve_simulator(sim_settings(**overrides), clock or FixedClock(MONDAY_10AM))

    return start


@pytest.fixture
def connect() -> ClientFactory:
    """``connect(sim, "real"|"paper", login=True)``: a KisClient for that domain's dev account."""

    @asynccontextmanager
    async def open_client(sim: RunningSimulator, domain: str, login: bool = True) -> AsyncIterator[KisClient]:
        endpoints = sim.real if domain == "real" else sim.paper
        account = REAL if domain == "real" else PAPER
        async with httpx.AsyncClient(base_url=endpoints.rest_url, timeout=10) as http:
            client = KisClient(http, account)
            if login:
                await client.login()
            yield client

    return open_client


@pytest.fixture
async def sim(start_sim: SimFactory) -> AsyncIterator[RunningSimulator]:
    async with start_sim() as running:
        yield running


@pytest.fixture
async def real(sim: RunningSimulator, connect: ClientFactory) -> AsyncIterator[KisClient]:
    async with connect(sim, "real") as client:
        yield client


@pytest.fixture
async def paper(sim: RunningSimulator, connect: ClientFactory) -> AsyncIterator[KisClient]:
    async with connect(sim, "paper") as client:
        yield client
