"""Simulator: OAuth endpoints and the /uapi gateway checks (kis-api.md §2, §3.5, §6.2)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

import httpx

from common.kis.sim import dev_account

PRICE = "quotations/inquire-price"
SAMSUNG = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}


def assert_gateway_error(response: httpx.Response, msg_cd: str) -> None:
    assert response.status_code == 500
    body = response.json()
    assert body["rt_cd"] != "0"
    assert body["msg_cd"] == msg_cd
    assert isinstance(body["msg1"], str)
    assert body["msg1"]


async def test_token_is_flat_json_with_integer_expiry(sim, connect):
    async with connect(sim, "real", login=False) as client:
        response = await client.issue_token()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "access_token_token_expired", "token_type", "expires_in"}
    assert body["expires_in"] == 86400 and isinstance(body["expires_in"], int)
    assert body["token_type"] == "Bearer"
    assert body["access_token_token_expired"] == "2024-03-05 10:00:00"  # simulated KST, 24 h later
    assert body["access_token"].count(".") == 2 and len(body["access_token"]) > 300
    assert "rt_cd" not in body


async def test_same_token_is_reissued_within_six_hours(sim, connect):
    async with connect(sim, "real", login=False) as client:
        first = (await client.issue_token()).json()
        sim.clock.advance(timedelta(hours=5, minutes=59))
        second = (await client.issue_token()).json()
    assert second["access_token"] == first["access_token"]
    assert second["access_token_token_expired"] == first["access_token_token_expired"]


async def test_new_token_after_six_hours(sim, connect):
    async with connect(sim, "real", login=False) as client:
        first = (await client.issue_token()).json()
        sim.clock.advance(timedelta(hours=6, seconds=1))
        second = (await client.issue_token()).json()
    assert second["access_token"] != first["access_token"]
    assert second["access_token_token_expired"] == "2024-03-05 16:00:01"


async def test_new_token_within_a_minute_is_throttled_with_403_egw00133(start_sim, connect):
    # Reuse window 0 forces a new token each time, so the one-a-minute throttle is what answers.
    async with start_sim(token_reuse_seconds=0) as sim, connect(sim, "real", login=False) as client:
        assert (await client.issue_token()).status_code == 200
        sim.clock.advance(timedelta(seconds=59))
        throttled = await client.issue_token()
        sim.clock.advance(timedelta(seconds=2))
        later = await client.issue_token()
    assert throttled.status_code == 403
    assert throttled.json() == {
        "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
        "error_code": "EGW00133",
    }
    assert later.status_code == 200


async def test_token_endpoint_allows_one_call_per_second(start_sim, connect):
    async with start_sim(token_calls_per_second=1.0) as sim, connect(sim, "real", login=False) as client:
        first = await client.issue_token()
        second = await client.issue_token()
    assert first.status_code == 200
    assert second.status_code == 403
    assert second.json()["error_code"] == "EGW00133"


async def test_unknown_appkey_gets_403_egw00103(sim):
    async with httpx.AsyncClient(base_url=sim.real.rest_url) as http:
        body = {"grant_type": "client_credentials", "appkey": "X" * 36, "appsecret": "Y" * 180}
        response = await http.post("/oauth2/tokenP", json=body)
    assert response.status_code == 403
    assert response.json() == {"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}


async def test_revoke_answers_integer_code_200_and_kills_the_token(sim, real):
    body = {"appkey": real.account.appkey, "appsecret": real.secret, "token": real.token}
    response = await real.http.post("/oauth2/revokeP", json=body)
    assert response.status_code == 200
    assert response.json() == {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"}
    after = await real.get(PRICE, "FHKST01010100", SAMSUNG)
    assert_gateway_error(after, "EGW00121")


async def test_approval_uses_secretkey_field_and_returns_flat_key(sim, real):
    key = await real.approval_key()
    assert len(key) == 36 and key.count("-") == 4
    wrong_field = {"grant_type": "client_credentials", "appkey": real.account.appkey, "appsecret": real.secret}
    response = await real.http.post("/oauth2/Approval", json=wrong_field)
    assert response.status_code == 403


async def test_hashkey_echoes_body_with_sha256(sim, real):
    order = {"CANO": real.account.cano, "ACNT_PRDT_CD": "01", "PDNO": "005930", "ORD_QTY": "1"}
    raw = json.dumps(order).encode()
    response = await real.http.post(
        "/uapi/hashkey",
        content=raw,
        headers={"content-type": "application/json", "appkey": real.account.appkey, "appsecret": real.secret},
    )
    assert response.status_code == 200
    assert response.json() == {"BODY": order, "HASH": hashlib.sha256(raw).hexdigest()}


async def test_invalid_bearer_token_gets_http_500_egw00121(sim, real):
    real.token = "not-a-token"
    assert_gateway_error(await real.get(PRICE, "FHKST01010100", SAMSUNG), "EGW00121")


async def test_missing_bearer_scheme_gets_egw00205(sim, real):
    headers = real.headers("FHKST01010100")
    headers["authorization"] = real.token
    response = await real.http.get("/uapi/domestic-stock/v1/" + PRICE, params=SAMSUNG, headers=headers)
    assert_gateway_error(response, "EGW00205")


async def test_token_expires_after_24_hours_with_egw00123(sim, real):
    sim.clock.advance(timedelta(hours=24, seconds=1))
    assert_gateway_error(await real.get(PRICE, "FHKST01010100", SAMSUNG), "EGW00123")


async def test_wrong_appsecret_is_refused(sim, real):
    headers = real.headers("FHKST01010100")
    headers["appsecret"] = "Z" * 180
    response = await real.http.get("/uapi/domestic-stock/v1/" + PRICE, params=SAMSUNG, headers=headers)
    assert_gateway_error(response, "EGW00105")


async def test_paper_key_on_real_host_and_real_key_on_paper_host_get_egw02004(sim, real, paper):
    async with httpx.AsyncClient(base_url=sim.real.rest_url) as http:
        headers = paper.headers("FHKST01010100")
        response = await http.get("/uapi/domestic-stock/v1/" + PRICE, params=SAMSUNG, headers=headers)
    assert_gateway_error(response, "EGW02004")
    assert response.json()["msg1"] == "실전투자 도메인은 모의투자 앱키로 호출하실 수 없습니다."
    async with httpx.AsyncClient(base_url=sim.paper.rest_url) as http:
        headers = real.headers("FHKST01010100")
        response = await http.get("/uapi/domestic-stock/v1/" + PRICE, params=SAMSUNG, headers=headers)
    assert_gateway_error(response, "EGW02004")


async def test_paper_domain_accepts_only_v_trading_trs(sim, paper):
    real_tr = await paper.balance("TTTC8434R")
    assert real_tr.status_code == 500
    assert real_tr.json()["msg1"] == "모의투자 TR 이 아닙니다."
    assert (await paper.balance("VTTC8434R")).status_code == 200


async def test_real_domain_refuses_paper_tr_and_unknown_tr_with_opsq0002(sim, real):
    assert_gateway_error(await real.balance("VTTC8434R"), "OPSQ0002")
    assert_gateway_error(await real.get(PRICE, "FHKST99999999", SAMSUNG), "OPSQ0002")


async def test_real_rate_limit_18_per_second_gives_http_500_egw00201(start_sim, connect):
    async with start_sim(real_rest_per_second=18.0) as sim, connect(sim, "real") as client:
        responses = await asyncio.gather(*(client.get(PRICE, "FHKST01010100", SAMSUNG) for _ in range(24)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 18
    limited = [r for r in responses if r.status_code == 500]
    assert limited, "24 calls at once must exceed 18/s"
    for response in limited:
        assert_gateway_error(response, "EGW00201")
        assert response.json()["msg1"] == "초당 거래건수를 초과하였습니다."


async def test_paper_rate_limit_is_one_call_per_second_per_appkey(start_sim, connect):
    async with start_sim(paper_rest_per_second=1.0) as sim, connect(sim, "paper") as client:
        first = await client.get(PRICE, "FHKST01010100", SAMSUNG)
        second = await client.get(PRICE, "FHKST01010100", SAMSUNG)
        await asyncio.sleep(1.05)
        third = await client.get(PRICE, "FHKST01010100", SAMSUNG)
    assert first.status_code == 200
    assert_gateway_error(second, "EGW00201")
    assert third.status_code == 200


async def test_custom_accounts_are_validated():
    account = dev_account("paper", 3)
    assert len(account.appkey) == 36
    assert len(account.appsecret.get_secret_value()) == 180
    assert account.account_no == account.cano + "01"
    assert "appsecret" not in repr(account) or "**" in repr(account)
