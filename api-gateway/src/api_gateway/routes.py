"""The gateway's own HTTP routes: login, admin of users and keys, platform settings, health,
and the table-driven forwarding routes."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from starlette.routing import Match, Route
from starlette.types import Scope

from api_gateway.dependencies import Admin, GatewayDep, GatewayState, Viewer, authorize, client_address
from api_gateway.health import SystemHealth, system_health
from api_gateway.platform_settings import PlatformSettingsUpdate, PlatformSettingsView
from api_gateway.roles import Role
from api_gateway.routing import Route as TableRoute
from api_gateway.schemas import ErrorBody, KeyCreate, KeyCreated, KeyView, Me, Token, UserCreate, UserView
from common.db import SessionDep

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no or invalid credentials"},
    403: {"model": ErrorBody, "description": "the caller's role is not enough"},
    429: {"model": ErrorBody, "description": "rate limited; see Retry-After"},
}


def security(role: Role) -> dict[str, Any]:
    """OpenAPI security requirement for ``role`` (OpenAPI 3.1 allows roles on every scheme)."""
    return {
        "security": [{"OAuth2Password": [role.value]}, {"APIKey": [role.value]}, {"APIKeyBearer": [role.value]}],
        "x-required-role": role.value,
    }


def build_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.get("/system/health", response_model=SystemHealth, tags=["system"], summary="Readiness of every service")
    async def get_system_health(gateway: GatewayDep, request: Request) -> SystemHealth:
        forwarder = gateway.require_forwarder()
        return await system_health(forwarder.session, gateway.upstreams, gateway.settings.health_timeout_seconds)

    @router.post(
        "/auth/token",
        response_model=Token,
        tags=["auth"],
        summary="Log in (OAuth2 password flow): a short-lived bearer token",
        responses={401: ERRORS[401], 429: ERRORS[429]},
    )
    async def login(
        form: Annotated[OAuth2PasswordRequestForm, Depends()],
        session: SessionDep,
        gateway: GatewayDep,
        request: Request,
    ) -> Token:
        gateway.login_limiter.take(client_address(request))
        issued = await gateway.accounts.login(session, form.username, form.password)
        return Token(access_token=issued.access_token, expires_in=issued.expires_in, role=issued.role)

    @router.get(
        "/auth/me", response_model=Me, tags=["auth"], summary="Who the credentials belong to",
        responses=ERRORS, openapi_extra=security(Role.VIEWER),
    )  # fmt: skip
    async def me(principal: Viewer) -> Me:
        return Me(kind=principal.kind, name=principal.name, role=principal.role)

    admin: dict[str, Any] = {"tags": ["admin"], "responses": ERRORS, "openapi_extra": security(Role.ADMIN)}

    @router.get("/admin/users", response_model=list[UserView], summary="Every user", **admin)
    async def list_users(_: Admin, session: SessionDep, gateway: GatewayDep) -> list[UserView]:
        return [UserView.of(u) for u in await gateway.accounts.list_users(session)]

    @router.post(
        "/admin/users", response_model=UserView, status_code=status.HTTP_201_CREATED, summary="Create a user", **admin
    )
    async def create_user(body: UserCreate, _: Admin, session: SessionDep, gateway: GatewayDep) -> UserView:
        user = await gateway.accounts.create_user(session, body.username, body.password.get_secret_value(), body.role)
        return UserView.of(user)

    @router.delete(
        "/admin/users/{username}", response_model=UserView, summary="Disable a user (they can no longer log in)",
        **admin,
    )  # fmt: skip
    async def disable_user(username: str, _: Admin, session: SessionDep, gateway: GatewayDep) -> UserView:
        return UserView.of(await gateway.accounts.disable_user(session, username))

    @router.get("/admin/keys", response_model=list[KeyView], summary="API keys (never the keys themselves)", **admin)
    async def list_keys(
        _: Admin,
        session: SessionDep,
        gateway: GatewayDep,
        include_revoked: Annotated[bool, Query(description="list revoked keys too")] = False,
    ) -> list[KeyView]:
        return [KeyView.of(k) for k in await gateway.accounts.list_keys(session, include_revoked=include_revoked)]

    @router.post(
        "/admin/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED,
        summary="Create an API key (the key is shown once, in this response)", **admin,
    )  # fmt: skip
    async def create_key(body: KeyCreate, principal: Admin, session: SessionDep, gateway: GatewayDep) -> KeyCreated:
        created = await gateway.accounts.create_key(session, body.name, body.role, principal.subject)
        return KeyCreated(**KeyView.of(created.record).model_dump(), key=created.plaintext)

    @router.delete("/admin/keys/{key_id}", response_model=KeyView, summary="Revoke an API key", **admin)
    async def revoke_key(key_id: uuid.UUID, _: Admin, session: SessionDep, gateway: GatewayDep) -> KeyView:
        return KeyView.of(await gateway.accounts.revoke_key(session, key_id))

    @router.get(
        "/dashboard/settings", response_model=PlatformSettingsView, tags=["dashboard"],
        summary="Platform settings: risk limits, watchlist, schedules, notifications (secrets never shown)",
        responses=ERRORS, openapi_extra=security(Role.VIEWER),
    )  # fmt: skip
    async def get_settings(_: Viewer, session: SessionDep, gateway: GatewayDep) -> PlatformSettingsView:
        return await gateway.platform_settings.get(session)

    @router.put(
        "/dashboard/settings", response_model=PlatformSettingsView, tags=["dashboard"],
        summary="Replace the platform settings (secrets: omit to keep, empty to clear)",
        responses=ERRORS, openapi_extra=security(Role.ADMIN),
    )  # fmt: skip
    async def put_settings(
        body: PlatformSettingsUpdate, principal: Admin, session: SessionDep, gateway: GatewayDep
    ) -> PlatformSettingsView:
        return await gateway.platform_settings.replace(session, body, principal.subject)

    return router


class ForwardingRoute(Route):
    """A table row as a plain Starlette route: no FastAPI dependency resolution on the hot path.

    Its methods are exactly the row's (Starlette would add HEAD to a GET route), and it names
    itself in the scope as FastAPI's routes do, for the per-route request metrics.
    """

    def __init__(self, gateway: GatewayState, route: TableRoute) -> None:
        async def forward(request: Request) -> Response:
            principal = await authorize(request, gateway, route.role)
            return await gateway.require_forwarder().forward(route, request, principal)

        super().__init__(route.public_path, forward, methods=[route.method], name=route.operation_id)
        self.methods = {route.method}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def forwarding_routes(gateway: GatewayState, routes: tuple[TableRoute, ...]) -> list[ForwardingRoute]:
    """One route per table row, documented by ``openapi.py``, not by FastAPI."""
    return [ForwardingRoute(gateway, route) for route in routes]
