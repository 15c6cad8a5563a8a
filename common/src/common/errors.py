"""One error hierarchy that tells the caller what to do, rendered by one FastAPI handler.

- ``Retryable``: a temporary condition (rate limit, broker or network hiccup); try again later.
- ``Rejected``: the request itself is wrong or not allowed; tell the user, do not retry.
- ``Operational``: something in our own operation is broken; stop and page someone.

Third-party exceptions are translated at the adapter boundary (``raise Unavailable(...) from e``)
so callers only ever handle these.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)


class Action(StrEnum):
    RETRY = "retry"
    REJECT = "reject"
    PAGE = "page"


class TradebotError(Exception):
    """Base of every error the platform raises on purpose."""

    status_code: ClassVar[int] = 500
    action: ClassVar[Action] = Action.PAGE
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "detail": self.detail}


class Retryable(TradebotError):
    status_code = 503
    action = Action.RETRY
    code = "temporarily_unavailable"


class Unavailable(Retryable):
    """A dependency (database, bus, broker, upstream service) cannot be reached now."""


class RateLimited(Retryable):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, detail: Any = None):
        super().__init__(message, detail=detail, headers={"Retry-After": str(max(1, round(retry_after)))})
        self.retry_after = retry_after


class Rejected(TradebotError):
    status_code = 400
    action = Action.REJECT
    code = "rejected"


class InvalidInput(Rejected):
    status_code = 422
    code = "invalid_input"


class NotFound(Rejected):
    status_code = 404
    code = "not_found"


class Conflict(Rejected):
    status_code = 409
    code = "conflict"


class Unauthorized(Rejected):
    status_code = 401
    code = "unauthorized"


class Forbidden(Rejected):
    status_code = 403
    code = "forbidden"


class Operational(TradebotError):
    """Our own fault or misconfiguration: retrying will not help."""

    status_code = 500
    action = Action.PAGE
    code = "operational_error"


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as ``{"error", "message", "detail"}`` with the right status."""

    async def on_tradebot_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TradebotError)
        if exc.action is Action.PAGE:
            log.error("http.operational_error", error=exc.code, message=exc.message, path=request.url.path)
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
            for err in exc.errors()
        ]
        body = {"error": "invalid_input", "message": "request validation failed", "detail": detail}
        return JSONResponse(body, status_code=422)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"error": code, "message": str(exc.detail), "detail": None}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never leak internals: the log has the traceback, the client a stable body.
        log.exception("http.unhandled_error", path=request.url.path, error_type=type(exc).__name__)
        body = {"error": "internal_error", "message": "internal error", "detail": None}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(TradebotError, on_tradebot_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
