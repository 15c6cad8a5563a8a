"""KIS failures translated into the platform taxonomy (``common.errors``), kis-api.md §3.5, §6.2.

Every class keeps the KIS ``msg_cd`` (and HTTP status when there was one) so callers and logs can
tell exactly what the broker said, while ``except Retryable`` / ``Rejected`` / ``Operational``
is all they need to decide what to do. Messages carry the broker's text, never a credential.
"""

from __future__ import annotations

from typing import Any

from common.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    Operational,
    RateLimited,
    Rejected,
    TradebotError,
    Unavailable,
)

RATE_LIMIT_CODES = frozenset({"EGW00201", "EGW00215"})
TOKEN_CODES = frozenset({"EGW00123", "EGW00121"})
TOKEN_THROTTLED = "EGW00133"  # noqa: S105 — a KIS message code
INVALID_APPKEY = "EGW00103"

# Our own configuration or code is wrong: retrying cannot help.
_OPERATIONAL_CODES = frozenset(
    {"EGW00103", "EGW00121", "EGW00123", "EGW00205", "EGW02004", "OPSQ0002", "OPSQ2000", "MCA00124", "OPSP0011"}
)
_NOT_FOUND_CODES = frozenset({"APBK0656"})
_MARKET_CLOSED_CODES = frozenset({"APBK0918", "APBK0919"})
_INVALID_INPUT_CODES = frozenset({"APBK0506", "OPSQ2001"})
_CONFLICT_CODES = frozenset({"APBK1359", "OPSP0003"})


class KisError(TradebotError):
    """Mixin base of every KIS error: the broker's ``msg_cd`` and HTTP status ride along."""

    def __init__(
        self,
        message: str,
        *,
        msg_cd: str | None = None,
        http_status: int | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, detail=detail, headers=headers)
        self.msg_cd = msg_cd or None
        self.http_status = http_status

    def __str__(self) -> str:
        return f"[{self.msg_cd}] {self.message}" if self.msg_cd else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, msg_cd={self.msg_cd!r}, http_status={self.http_status!r})"


class KisUnavailable(Unavailable, KisError):
    """KIS could not be reached or answered with a transient server error."""


class OrderOutcomeUnknown(KisUnavailable):
    """An order may or may not have reached the broker (timeout or broken connection after sending).

    Never resend blindly: query inquire-daily-ccld for the order first.
    """


class KisRateLimited(RateLimited, KisError):
    """The per-second limit (EGW00201/EGW00215) persisted through the client's bounded back-off."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        msg_cd: str | None = None,
        http_status: int | None = None,
        detail: Any = None,
    ) -> None:
        RateLimited.__init__(self, message, retry_after=retry_after, detail=detail)
        self.msg_cd = msg_cd or None
        self.http_status = http_status


class TokenIssueThrottled(KisRateLimited):
    """A new access token cannot be issued yet (one per minute per appkey; EGW00133)."""


class KisRejected(Rejected, KisError):
    """The broker refused the request (business rule); do not retry unchanged."""


class KisInvalidInput(InvalidInput, KisError):
    """A parameter the broker refused (tick grid, invalid field value)."""


class KisNotFound(NotFound, KisError):
    """Unknown symbol or order."""


class KisConflict(Conflict, KisError):
    """The request conflicts with the order's state (e.g. cancel more than remains)."""


class MarketClosed(KisRejected):
    """Outside the hours in which the broker accepts this order."""


class SubscriptionLimitExceeded(KisRejected):
    """More WebSocket registrations than a session allows (41, kis-api.md §5.9)."""


class KisOperational(Operational, KisError):
    """Misconfiguration (wrong appkey/domain/account) or a protocol violation on our side."""


def translate(msg_cd: str | None, msg1: str, *, http_status: int | None, rt_cd: str | None = None) -> KisError:
    """The platform error for a KIS failure envelope (``rt_cd != "0"`` or a gateway error)."""
    code = (msg_cd or "").strip()
    text = (msg1 or "").strip() or "KIS request failed"
    kwargs: dict[str, Any] = {"msg_cd": code, "http_status": http_status, "detail": {"rt_cd": rt_cd}}
    if code in RATE_LIMIT_CODES:
        return KisRateLimited(text, retry_after=1.0, **kwargs)
    if code in _OPERATIONAL_CODES or "모의투자 TR" in text:
        return KisOperational(text, **kwargs)
    if code in _NOT_FOUND_CODES:
        return KisNotFound(text, **kwargs)
    if code in _MARKET_CLOSED_CODES or "장종료" in text or "장시작전" in text:
        return MarketClosed(text, **kwargs)
    if code in _INVALID_INPUT_CODES or "호가단위" in text:
        return KisInvalidInput(text, **kwargs)
    if code in _CONFLICT_CODES:
        return KisConflict(text, **kwargs)
    if http_status is not None and http_status >= 500:
        return KisUnavailable(text, **kwargs)
    return KisRejected(text, **kwargs)
