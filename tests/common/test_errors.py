"""One handler renders the taxonomy; client mistakes are 4xx, never 500; nothing leaks."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from common.errors import (
    Action,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Operational,
    RateLimited,
    Rejected,
    Retryable,
    TradebotError,
    Unavailable,
    install_error_handlers,
)


class Order(BaseModel):
    quantity: int = Field(gt=0)


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    errors: dict[str, TradebotError] = {
        "missing": NotFound("order 42 not found"),
        "conflict": Conflict("idempotency key reused with a different body"),
        "forbidden": Forbidden("admin role required"),
        "limited": RateLimited("slow down", retry_after=2.4),
        "down": Unavailable("database unreachable"),
        "broken": Operational("misconfigured"),
    }

    @app.get("/raise/{name}")
    async def raise_named(name: str) -> None:
        raise errors[name]

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("secret internal detail")

    @app.post("/orders")
    async def create(order: Order) -> Order:
        return order

    return app


async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("missing", 404, "not_found"),
        ("conflict", 409, "conflict"),
        ("forbidden", 403, "forbidden"),
        ("limited", 429, "rate_limited"),
        ("down", 503, "temporarily_unavailable"),
        ("broken", 500, "operational_error"),
    ],
)
async def test_errors_render_with_status_and_code(name: str, status: int, code: str) -> None:
    response = await call("GET", f"/raise/{name}")
    assert response.status_code == status
    assert response.json()["error"] == code
    assert set(response.json()) == {"error", "message", "detail"}


async def test_rate_limited_says_when_to_retry() -> None:
    response = await call("GET", "/raise/limited")
    assert response.headers["retry-after"] == "2"


async def test_validation_errors_are_clear_422s() -> None:
    response = await call("POST", "/orders", json={"quantity": 0})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    assert body["detail"][0]["loc"] == ["body", "quantity"]


async def test_malformed_json_body_is_422_not_500() -> None:
    response = await call("POST", "/orders", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_unexpected_errors_do_not_leak_details() -> None:
    response = await call("GET", "/bug")
    assert response.status_code == 500
    assert "secret internal detail" not in response.text


async def test_unknown_route_is_a_404_in_the_same_shape() -> None:
    response = await call("GET", "/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_taxonomy_tells_the_caller_what_to_do() -> None:
    assert Unavailable("x").action is Action.RETRY and isinstance(Unavailable("x"), Retryable)
    assert InvalidInput("x").action is Action.REJECT and isinstance(InvalidInput("x"), Rejected)
    assert Operational("x").action is Action.PAGE
