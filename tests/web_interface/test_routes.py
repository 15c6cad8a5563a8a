"""The dashboard's routes against a fake gateway: sessions, errors as pages, forms, formatting."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse

from common.runtime import Runtime
from common.settings import Environment, Mode, RuntimeSettings
from web_interface.app import create_app
from web_interface.formatting import krw, percent
from web_interface.gateway import Invalid
from web_interface.settings import WebInterfaceSettings

TOKEN = "eyJ.fake.token"


@dataclass
class FakeGateway:
    """Just enough of the gateway's API; ``down`` makes every call fail to connect."""

    down: bool = False
    token_valid: bool = True
    role: str = "admin"
    kill_switch: dict[str, Any] = field(default_factory=lambda: {"engaged": False, "reason": None, "actor": None,
                                                                 "changed_at": None})  # fmt: skip
    settings_puts: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        def authorised(request: Request) -> JSONResponse | None:
            if request.headers.get("authorization") != f"Bearer {TOKEN}" or not self.token_valid:
                return JSONResponse({"error": "unauthorized", "message": "invalid token"}, status_code=401)
            return None

        @app.post("/api/v1/auth/token")
        async def token(username: str = Form(), password: str = Form()) -> JSONResponse:
            if password != "right":
                return JSONResponse({"error": "unauthorized", "message": "wrong"}, status_code=401)
            return JSONResponse({"access_token": TOKEN, "token_type": "bearer", "expires_in": 900, "role": self.role})

        @app.get("/api/v1/system/health")
        async def health() -> dict[str, Any]:
            return {"status": "ready", "services": {"trader": {"status": "ready", "checks": {}, "detail": None}}}

        @app.api_route("/api/v1/{path:path}", methods=["GET", "POST", "PUT"])
        async def anything(path: str, request: Request) -> JSONResponse:
            if (problem := authorised(request)) is not None:
                return problem
            return self.answer(request.method, path, await request.body(), request)

        return app

    def answer(self, method: str, path: str, body: bytes, request: Request) -> JSONResponse:
        import json

        if path == "trade/kill-switch" and method == "POST":
            if self.role != "admin":
                return JSONResponse({"error": "forbidden", "message": "this route needs the admin role"}, 403)
            self.kill_switch = {**self.kill_switch, **json.loads(body), "actor": "admin:admin"}
            return JSONResponse(self.kill_switch)
        if path == "dashboard/settings" and method == "PUT":
            document = json.loads(body)
            risk = document["risk"]
            if risk["max_order_value_krw"] > risk["max_gross_exposure_krw"]:
                detail = [{"loc": ["body", "risk"], "msg": "max_order_value_krw cannot exceed max_gross_exposure_krw",
                           "type": "value_error"}]  # fmt: skip
                return JSONResponse({"error": "invalid_input", "message": "request validation failed",
                                     "detail": detail}, 422)  # fmt: skip
            self.settings_puts.append(document)
            return JSONResponse(SETTINGS)
        reads: dict[str, Any] = {
            "dashboard/settings": SETTINGS,
            "trade/reconciliation": {"at": "2026-03-04T01:00:00Z"},
            "trade/pnl": {"cash": 90_000_000, "market_value": 12_345_678, "equity": 102_345_678, "realised_pnl": 0,
                          "unrealised_pnl": 345_678, "fees_paid": 1_800, "net_pnl": 343_878,
                          "day_start_equity": 102_000_000, "day_pnl": 345_678, "peak_equity": 102_345_678,
                          "drawdown": "0.0000"},
            "trade/positions": [{"symbol": "005930", "quantity": 170, "cost": 12_000_000, "average_cost": "70588.2353",
                                 "last_price": 72_622, "market_value": 12_345_678, "unrealised_pnl": 345_678,
                                 "realised_pnl": 0}],
            "trade/history": {"items": [], "total": 0, "limit": 100, "offset": 0},
            "trade/kill-switch": self.kill_switch,
            "dashboard/performance": {"points": [], "benchmark_symbols": [], "metrics": {
                "start_equity": None, "equity": None, "total_return": None, "benchmark_return": None, "sharpe": None,
                "max_drawdown": None, "win_rate": None, "closed_trades": 0, "fills": 0}},
            "model/models": [],
        }  # fmt: skip
        if method == "GET" and path in reads:
            return JSONResponse(reads[path])
        return JSONResponse({"error": "not_found", "message": "Not Found", "detail": None}, 404)


SETTINGS: dict[str, Any] = {
    "risk": {"max_position_krw": 10_000_000, "max_gross_exposure_krw": 50_000_000, "max_order_value_krw": 5_000_000,
             "daily_loss_limit_krw": 1_000_000, "max_drawdown_pct": "10", "max_orders_per_minute": 30},
    "watchlist": ["005930"],
    "schedules": [{"job": "collect", "at": "15:40:00", "days": ["mon", "tue"], "enabled": True}],
    "notifications": {"events": ["fill"], "telegram_chat_id": None, "discord_webhook_configured": False,
                      "telegram_bot_token_configured": False},
    "version": 3, "updated_at": "2026-03-04T01:00:00Z", "updated_by": "user:admin",
}  # fmt: skip


class DownTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def fake() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def web(fake: FakeGateway, sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    runtime_settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=sqlite_url)  # type: ignore[arg-type]
    settings = WebInterfaceSettings(cookie_secure=True)
    async with Runtime.from_settings(runtime_settings) as runtime:
        runtime.extras["gateway_url"] = "http://gateway.test"
        transport = DownTransport() if fake.down else httpx.ASGITransport(app=fake.app())
        app = create_app(runtime, settings=settings, gateway_transport=transport)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://web.test") as client:
                yield client


async def login(client: httpx.AsyncClient) -> None:
    response = await client.post("/login", data={"username": "admin", "password": "right", "next": "/dashboard"})
    assert response.status_code == 303, response.text


async def csrf_of(client: httpx.AsyncClient, path: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', (await client.get(path)).text)
    assert match is not None
    return match.group(1)


async def test_login_sets_an_httponly_samesite_secure_cookie_and_logout_clears_it(web: httpx.AsyncClient) -> None:
    response = await web.post("/login", data={"username": "admin", "password": "right", "next": "/trades"})
    assert response.status_code == 303 and response.headers["location"] == "/trades"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    assert re.search(r"max-age=(899|900)", cookie)
    assert TOKEN not in response.headers["set-cookie"]  # encrypted, not just signed
    logout = await web.post("/logout")
    assert logout.status_code == 303 and 'tradebot_session=""' in logout.headers["set-cookie"]


async def test_wrong_password_shows_the_login_page_with_a_message(web: httpx.AsyncClient) -> None:
    response = await web.post("/login", data={"username": "admin", "password": "wrong"})
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


async def test_login_never_redirects_to_another_site(web: httpx.AsyncClient) -> None:
    response = await web.post("/login", data={"username": "a", "password": "right", "next": "//evil.example/x"})
    assert response.headers["location"] == "/dashboard"


async def test_pages_without_a_session_redirect_to_login(web: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/training", "/trades", "/logs", "/settings"):
        response = await web.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith(f"/login?next={path}")


async def test_a_token_the_gateway_no_longer_accepts_sends_the_user_back_to_login(
    web: httpx.AsyncClient, fake: FakeGateway
) -> None:
    await login(web)
    fake.token_valid = False
    response = await web.get("/dashboard")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/dashboard&notice=expired"


async def test_a_tampered_cookie_is_no_session(web: httpx.AsyncClient) -> None:
    web.cookies.set("tradebot_session", "gAAAAAB-not-a-real-session", domain="web.test")
    assert (await web.get("/dashboard")).status_code == 303


@pytest.mark.parametrize("fake", [FakeGateway(down=True)])
async def test_gateway_down_gives_a_clear_page_never_a_500(web: httpx.AsyncClient, fake: FakeGateway) -> None:
    index = await web.get("/")
    assert index.status_code == 200 and "is not answering" in index.text
    login_attempt = await web.post("/login", data={"username": "admin", "password": "right"})
    assert login_attempt.status_code == 503 and "The API gateway at http://gateway.test is not answering" in (
        login_attempt.text
    )


async def test_the_dashboard_shows_won_amounts_with_korean_grouping(web: httpx.AsyncClient) -> None:
    await login(web)
    page = await web.get("/dashboard")
    assert page.status_code == 200
    assert "₩102,345,678" in page.text and "+₩345,678" in page.text
    assert "No model promoted yet." in page.text


async def test_kill_switch_needs_the_csrf_token_and_admin(web: httpx.AsyncClient, fake: FakeGateway) -> None:
    await login(web)
    forged = await web.post("/dashboard/kill-switch", data={"engaged": "true", "reason": "x", "csrf": "nope"})
    assert forged.status_code == 403 and not fake.kill_switch["engaged"]
    csrf = await csrf_of(web, "/dashboard")
    engaged = await web.post("/dashboard/kill-switch", data={"engaged": "true", "reason": "test", "csrf": csrf})
    assert engaged.status_code == 303 and fake.kill_switch["engaged"]
    fake.role = "viewer"
    refused = await web.post("/dashboard/kill-switch", data={"engaged": "false", "reason": "x", "csrf": csrf})
    assert refused.status_code == 403 and "this route needs the admin role" in refused.text


async def test_settings_show_the_gateways_422_next_to_the_fields(web: httpx.AsyncClient, fake: FakeGateway) -> None:
    await login(web)
    csrf = await csrf_of(web, "/settings")
    form = {
        "csrf": csrf, "risk.max_position_krw": "10,000,000", "risk.max_gross_exposure_krw": "₩50,000,000",
        "risk.max_order_value_krw": "60000000", "risk.daily_loss_limit_krw": "1000000", "risk.max_drawdown_pct": "10",
        "risk.max_orders_per_minute": "30", "watchlist": "005930, 000660", "schedules.0.job": "collect",
        "schedules.0.at": "15:40", "schedules.0.days": "mon", "schedules.0.enabled": "on",
    }  # fmt: skip
    refused = await web.post("/settings", data=form)
    assert refused.status_code == 422
    assert "max_order_value_krw cannot exceed max_gross_exposure_krw" in refused.text
    assert 'value="60000000"' in refused.text  # what the user typed stays in the form
    bad_time = await web.post("/settings", data={**form, "risk.max_order_value_krw": "5000000", "schedules.0.at": "x"})
    assert bad_time.status_code == 422 and "enter a time as HH:MM (KST)" in bad_time.text
    saved = await web.post("/settings", data={**form, "risk.max_order_value_krw": "5,000,000"})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings?notice=settings_saved"
    document = fake.settings_puts[-1]
    assert document["risk"]["max_gross_exposure_krw"] == 50_000_000
    assert document["watchlist"] == ["005930", "000660"]
    assert document["schedules"] == [{"job": "collect", "at": "15:40", "days": ["mon"], "enabled": True}]


async def test_training_form_errors_are_shown_per_field(web: httpx.AsyncClient) -> None:
    await login(web)
    csrf = await csrf_of(web, "/training")
    response = await web.post(
        "/training", data={"csrf": csrf, "source.kind": "csv", "source.path": "", "a3c.lr": "fast", "seeds": "0"}
    )
    assert response.status_code == 422
    assert "enter a number, e.g. 0.001" in response.text
    assert "a csv source needs a folder" not in response.text or "required" in response.text


async def test_live_events_need_a_session(web: httpx.AsyncClient) -> None:
    assert (await web.get("/events", params={"stream": "dashboard"})).status_code == 401


def test_krw_formatting_matches_intl_ko_kr() -> None:
    assert krw(1234567) == "₩1,234,567"
    assert krw(-5000) == "-₩5,000"
    assert krw(345678, signed=True) == "+₩345,678"
    assert krw("72622.4") == "₩72,622"
    assert krw(None) == "–"
    assert percent(0.1234) == "12.34%" and percent(-0.05, 1, signed=True) == "-5.0%"


def test_a_422_detail_maps_to_field_names() -> None:
    error = Invalid("bad", detail=[{"loc": ["body", "a3c", "lr"], "msg": "Input should be greater than 0"},
                                   {"loc": ["body", "schedules", 0, "at"], "msg": "bad time"}])  # fmt: skip
    assert error.field_errors() == {"a3c.lr": "Input should be greater than 0", "schedules.0.at": "bad time"}


def test_a_placeholder_session_secret_is_refused_outside_development() -> None:
    with pytest.raises(ValueError, match="placeholder"):
        WebInterfaceSettings.model_validate({"TRADEBOT_ENVIRONMENT": Environment.PRODUCTION.value})
