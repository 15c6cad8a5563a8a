"""The gateway's typed state and its request dependencies: who is calling, may they, how often."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from api_gateway.accounts import Accounts
from api_gateway.platform_settings import PlatformSettingsService
from api_gateway.proxy import Forwarder
from api_gateway.ratelimit import TokenBucketLimiter
from api_gateway.roles import Principal, Role
from api_gateway.security import looks_like_api_key, unauthorized
from api_gateway.settings import ApiGatewaySettings
from api_gateway.upstreams import Upstreams
from common.errors import Forbidden, Operational, Unauthorized, Unavailable
from common.runtime import Runtime


@dataclass
class GatewayState:
    """Everything the gateway's routes use, kept on ``app.state.gateway``."""

    settings: ApiGatewaySettings
    runtime: Runtime
    accounts: Accounts
    platform_settings: PlatformSettingsService
    limiter: TokenBucketLimiter
    login_limiter: TokenBucketLimiter
    upstreams: Upstreams
    forwarder: Forwarder | None = None

    def require_forwarder(self) -> Forwarder:
        if self.forwarder is None:
            raise Operational("the gateway's HTTP client is not started")
        return self.forwarder


async def gateway_of(request: Request) -> GatewayState:
    # Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread.
    state: GatewayState = request.app.state.gateway
    return state


GatewayDep = Annotated[GatewayState, Depends(gateway_of)]


def client_address(request: Request) -> str:
    return f"ip:{request.client.host}" if request.client is not None else "ip:unknown"


def _credential(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("use 'Authorization: Bearer <token or API key>'", "invalid_request")
        return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key else None


async def authenticate(request: Request, gateway: GatewayState) -> Principal:
    """The caller, from a JWT or an API key; charged one token of their rate limit."""
    try:
        credential = _credential(request)
        if credential is None:
            gateway.limiter.take(client_address(request))
            raise unauthorized("authentication required: a bearer token or an API key")
        if looks_like_api_key(credential):
            principal = await _authenticate_key(gateway, credential)
        else:
            principal = gateway.accounts.tokens.verify(credential)
    except Unauthorized:
        # Failed credentials draw on the tight login bucket: guessing keys or tokens is throttled.
        gateway.login_limiter.take(client_address(request))
        raise
    gateway.limiter.take(principal.subject)
    return principal


async def authorize(request: Request, gateway: GatewayState, role: Role) -> Principal:
    """The authenticated caller, if their role is ``role`` or higher."""
    principal = await authenticate(request, gateway)
    if not principal.role.allows(role):
        raise Forbidden(f"this needs the {role.value} role or higher; you have {principal.role.value}")
    return principal


async def _authenticate_key(gateway: GatewayState, credential: str) -> Principal:
    cached = gateway.accounts.cached_key(credential)
    if cached is not None:
        return cached
    # Its own short transaction: forwarded requests must not hold a database connection (or,
    # on SQLite, the write lock of last_used_at) while the service works.
    try:
        async with gateway.runtime.sessionmaker() as session:
            principal = await gateway.accounts.authenticate_key(session, credential)
            await session.commit()
    except SQLAlchemyError as e:
        raise Unavailable("authentication is unavailable: the gateway's database does not answer") from e
    return principal


def require(role: Role) -> Callable[[Request, GatewayState], Awaitable[Principal]]:
    """A dependency admitting callers whose role is ``role`` or higher."""

    async def dependency(request: Request, gateway: GatewayDep) -> Principal:
        return await authorize(request, gateway, role)

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Trader = Annotated[Principal, Depends(require(Role.TRADER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
