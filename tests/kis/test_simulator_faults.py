"""Simulator: faults on demand through /admin/faults and through settings."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from common.kis.sim import FaultSpec

PRICE = "quotations/inquire-price"
SAMSUNG = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}


async def admin(sim, method: str, body: dict | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.real.rest_url) as http:
        return await http.request(method, "/admin/faults", json=body)


async def test_rate_limit_storm_for_n_calls(sim, real):
    response = await admin(sim, "POST", {"rate_limit_calls": 2})
    assert response.status_code == 200 and response.json()["pending"]["rate_limit_calls"] == 2
    results = [await real.get(PRICE, "FHKST01010100", SAMSUNG) for _ in range(3)]
    assert [r.status_code for r in results] == [500, 500, 200]
    assert results[0].json()["msg_cd"] == "EGW00201"


async def test_rate_limit_storm_for_a_duration(sim, real):
    await admin(sim, "POST", {"rate_limit_seconds": 0.3})
    during = await real.get(PRICE, "FHKST01010100", SAMSUNG)
    await asyncio.sleep(0.35)
    after = await real.get(PRICE, "FHKST01010100", SAMSUNG)
    assert during.json()["msg_cd"] == "EGW00201" and after.status_code == 200


async def test_forced_token_expiry_gives_egw00123_until_a_new_token(sim, real):
    response = await admin(sim, "POST", {"expire_tokens": True})
    assert response.json()["tokens_expired"] >= 1
    expired = await real.get(PRICE, "FHKST01010100", SAMSUNG)
    assert expired.status_code == 500 and expired.json()["msg_cd"] == "EGW00123"
    old = real.token
    assert await real.login() != old  # re-issue is allowed at once after a forced expiry
    assert (await real.get(PRICE, "FHKST01010100", SAMSUNG)).status_code == 200


async def test_http_5xx_for_n_calls(sim, real):
    await admin(sim, "POST", {"http_error_calls": 2, "http_error_status": 503})
    statuses = [(await real.get(PRICE, "FHKST01010100", SAMSUNG)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_drop_websockets_cuts_every_session(sim, real):
    key = await real.approval_key()
    async with ws_connect(sim.real.ws_url) as ws:
        message = {
            "header": {"approval_key": key, "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
            "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}},
        }
        await ws.send(json.dumps(message))
        await asyncio.wait_for(ws.recv(), 2)
        response = await admin(sim, "POST", {"drop_websockets": True})
        assert response.json()["sessions_dropped"] == 1
        closed = False
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 2)
        except ConnectionClosed:
            closed = True
    assert closed


async def test_added_latency_then_clear(sim, real):
    await admin(sim, "POST", {"latency_ms": 300})
    started = time.perf_counter()
    assert (await real.get(PRICE, "FHKST01010100", SAMSUNG)).status_code == 200
    slow = time.perf_counter() - started
    assert slow >= 0.3
    cleared = await admin(sim, "DELETE")
    assert cleared.json()["pending"]["latency_ms"] == 0
    started = time.perf_counter()
    await real.get(PRICE, "FHKST01010100", SAMSUNG)
    assert time.perf_counter() - started < 0.3


async def test_get_faults_reports_pending_state(sim):
    await admin(sim, "POST", {"http_error_calls": 4})
    state = (await admin(sim, "GET")).json()
    assert state["pending"]["http_error_calls"] == 4


async def test_invalid_fault_spec_is_a_422(sim):
    assert (await admin(sim, "POST", {"http_error_status": 200})).status_code == 422


async def test_faults_from_settings_apply_at_start(start_sim, connect):
    async with start_sim(faults=FaultSpec(rate_limit_calls=1)) as sim, connect(sim, "real") as real:
        first = await real.get(PRICE, "FHKST01010100", SAMSUNG)
        second = await real.get(PRICE, "FHKST01010100", SAMSUNG)
    assert first.json()["msg_cd"] == "EGW00201" and second.status_code == 200
