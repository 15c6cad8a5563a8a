"""Authentication: the password flow and JWTs, API keys hashed at rest, admin of users and keys,
and the first admin from settings."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import select

from api_gateway.app import build_gateway
from api_gateway.models import ApiKey, ApiUser
from api_gateway.roles import Role
from api_gateway.security import TokenIssuer
from api_gateway.settings import ApiGatewaySettings
from common.errors import Operational
from common.runtime import Runtime
from common.settings import Environment, Mode, RuntimeSettings
from tests.api_gateway.conftest import ADMIN_PASSWORD, Gateway, GatewayFactory, gateway_settings


async def test_login_gives_a_short_lived_bearer_token(gateway: Gateway) -> None:
    response = await gateway.login("admin", ADMIN_PASSWORD)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["role"] == "admin"
    assert body["expires_in"] == 15 * 60


@pytest.mark.parametrize(("username", "password"), [("admin", "wrong-password"), ("ghost", "whatever-123")])
async def test_wrong_credentials_are_401_without_saying_which_part(
    gateway: Gateway, username: str, password: str
) -> None:
    response = await gateway.login(username, password)

    assert response.status_code == 401
    assert response.json()["message"] == "incorrect username or password"


async def test_a_login_without_the_form_fields_is_422(gateway: Gateway) -> None:
    response = await gateway.client.post("/api/v1/auth/token", data={"username": "admin"})

    assert response.status_code == 422


async def test_expired_forged_and_malformed_tokens_are_401(gateway: Gateway) -> None:
    issuer: TokenIssuer = gateway.app.state.gateway.accounts.tokens
    expired = issuer.issue("admin", Role.ADMIN, datetime.now(UTC) - timedelta(hours=1))
    forged = TokenIssuer("another-secret-" + "y" * 40, issuer.issuer, issuer.ttl).issue(
        "admin", Role.ADMIN, datetime.now(UTC)
    )
    for token, message in [(expired, "access token expired"), (forged, "invalid access token")]:
        response = await gateway.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()["message"]) == (401, message)
    basic = await gateway.client.get("/api/v1/auth/me", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


async def test_a_verified_token_is_trusted_until_it_expires_and_refused_after(gateway: Gateway) -> None:
    issuer: TokenIssuer = gateway.app.state.gateway.accounts.tokens
    # Expires one to two seconds from now (exp is whole seconds).
    token = issuer.issue("admin", Role.ADMIN, datetime.now(UTC) - issuer.ttl + timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {token}"}
    first = await gateway.client.get("/api/v1/auth/me", headers=headers)
    again = await gateway.client.get("/api/v1/auth/me", headers=headers)
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
    await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
    expired = await gateway.client.get("/api/v1/auth/me", headers=headers)

    assert first.status_code == again.status_code == 200
    assert (expired.status_code, expired.json()["message"]) == (401, "access token expired")


async def test_an_api_key_works_as_bearer_or_x_api_key(gateway: Gateway) -> None:
    key = gateway.keys[Role.TRADER]
    as_bearer = await gateway.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
    as_header = await gateway.client.get("/api/v1/auth/me", headers={"X-API-Key": key})

    assert as_bearer.json()["role"] == as_header.json()["role"] == "trader"
    assert as_bearer.json()["kind"] == "key"


async def test_api_keys_are_stored_hashed_and_never_listed(gateway: Gateway) -> None:
    admin = gateway.auth(Role.ADMIN)
    listing = await gateway.client.get("/api/v1/admin/keys", headers=admin)

    assert listing.status_code == 200
    for key in gateway.keys.values():
        assert key not in listing.text
        assert key.split("_")[2] not in listing.text
    async with gateway.runtime.sessionmaker() as session:
        stored = (await session.scalars(select(ApiKey))).all()
    assert len(stored) == 3
    for record in stored:
        assert all(record.key_hash != key and key not in record.key_hash for key in gateway.keys.values())


async def test_a_revoked_key_no_longer_authenticates(gateway: Gateway) -> None:
    admin = gateway.auth(Role.ADMIN)
    created = (await gateway.client.post("/api/v1/admin/keys", json={"name": "bot"}, headers=admin)).json()
    assert (await gateway.client.get("/api/v1/auth/me", headers={"X-API-Key": created["key"]})).status_code == 200

    revoked = await gateway.client.delete(f"/api/v1/admin/keys/{created['id']}", headers=admin)
    after = await gateway.client.get("/api/v1/auth/me", headers={"X-API-Key": created["key"]})

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert after.status_code == 401 and after.json()["message"] == "API key revoked"
    active = (await gateway.client.get("/api/v1/admin/keys", headers=admin)).json()
    assert created["id"] not in [k["id"] for k in active]
    everything = (await gateway.client.get("/api/v1/admin/keys?include_revoked=true", headers=admin)).json()
    assert created["id"] in [k["id"] for k in everything]


async def test_made_up_and_tampered_keys_are_401(gateway: Gateway) -> None:
    real = gateway.keys[Role.ADMIN]
    tampered = real[:-1] + ("A" if real[-1] != "A" else "B")
    for key in [tampered, "tb_deadbeef_" + "x" * 43, "tb_nonsense"]:
        response = await gateway.client.get("/api/v1/auth/me", headers={"X-API-Key": key})
        assert response.status_code == 401, key


async def test_admin_manages_users_and_a_disabled_user_cannot_log_in(gateway: Gateway) -> None:
    admin = gateway.auth(Role.ADMIN)
    created = await gateway.client.post(
        "/api/v1/admin/users", json={"username": "vic", "password": "vic-password-1"}, headers=admin
    )
    duplicate = await gateway.client.post(
        "/api/v1/admin/users", json={"username": "vic", "password": "vic-password-1"}, headers=admin
    )
    listing = (await gateway.client.get("/api/v1/admin/users", headers=admin)).json()
    disabled = await gateway.client.delete("/api/v1/admin/users/vic", headers=admin)

    assert created.status_code == 201 and created.json()["role"] == "viewer"
    assert "password" not in created.text and "hash" not in created.text
    assert duplicate.status_code == 409
    assert [u["username"] for u in listing] == ["admin", "vic"]
    assert disabled.json()["disabled"] is True
    assert (await gateway.login("vic", "vic-password-1")).status_code == 401


async def test_the_last_admin_cannot_be_disabled(gateway: Gateway) -> None:
    response = await gateway.client.delete("/api/v1/admin/users/admin", headers=gateway.auth(Role.ADMIN))

    assert response.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"username": "x", "password": "long-enough-1"},
        {"username": "ok-name", "password": "short"},
        {"username": "ok-name", "password": "long-enough-1", "role": "root"},
        {"username": "ok-name", "password": "long-enough-1", "extra": 1},
    ],
)
async def test_invalid_user_input_is_422(gateway: Gateway, body: dict[str, object]) -> None:
    response = await gateway.client.post("/api/v1/admin/users", json=body, headers=gateway.auth(Role.ADMIN))

    assert response.status_code == 422


async def test_the_first_admin_is_created_once_and_the_password_is_hashed(gateway: Gateway) -> None:
    async with gateway.runtime.sessionmaker() as session:
        users = (await session.scalars(select(ApiUser))).all()

    assert [(u.username, u.role) for u in users] == [("admin", "admin")]
    assert users[0].password_hash.startswith("$argon2") and ADMIN_PASSWORD not in users[0].password_hash


async def test_bootstrap_does_nothing_when_users_exist(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(gateway_settings({}))
    app = build_gateway(
        gateway.runtime,
        gateway_settings({}, bootstrap_admin_username="second", bootstrap_admin_password=SecretStr("another-pass-1")),
    )
    async with app.router.lifespan_context(app):
        pass
    async with gateway.runtime.sessionmaker() as session:
        names = (await session.scalars(select(ApiUser.username))).all()
    assert names == ["admin"]


def test_placeholder_secrets_are_refused_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_ENVIRONMENT", "production")
    strong = SecretStr("s" * 40)
    with pytest.raises(ValidationError, match="placeholder"):
        ApiGatewaySettings(jwt_secret=SecretStr("changethis"))
    with pytest.raises(ValidationError, match="at least 32"):
        ApiGatewaySettings(jwt_secret=SecretStr("short-but-real"))
    with pytest.raises(ValidationError, match="placeholder"):
        ApiGatewaySettings(
            jwt_secret=strong,
            bootstrap_admin_username="admin",
            bootstrap_admin_password=SecretStr("changethis"),
        )
    settings = ApiGatewaySettings(jwt_secret=strong)
    assert settings.environment is Environment.PRODUCTION and not settings.development


async def test_a_placeholder_admin_password_is_only_warned_about_in_development(tmp_path: Path) -> None:
    settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"))
    gateway_config = gateway_settings({}, bootstrap_admin_password=SecretStr("changethis"))
    async with Runtime.from_settings(settings) as runtime:
        app = build_gateway(runtime, gateway_config)
        async with app.router.lifespan_context(app):
            pass
        async with runtime.sessionmaker() as session:
            assert (await session.scalars(select(ApiUser.username))).all() == ["admin"]
        # Outside development the settings refuse it before the gateway starts; were they built
        # anyway, the lifespan refuses too.
        production = gateway_config.model_copy(update={"environment": Environment.PRODUCTION})
        app = build_gateway(runtime, production)
        with pytest.raises(Operational, match="placeholder"):
            async with app.router.lifespan_context(app):
                pass


async def test_two_replicas_bootstrapping_at_once_create_one_admin_and_both_start(pg_url: str) -> None:
    import asyncio

    from api_gateway.accounts import Accounts
    from common.clock import SystemClock

    runtime = Runtime.from_settings(RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr(pg_url)))
    async with runtime:
        accounts = Accounts(SystemClock(), TokenIssuer("s" * 40, "test", timedelta(minutes=5)))
        both_saw_no_users = asyncio.Barrier(2)

        async def replica() -> bool:
            async with runtime.sessionmaker() as session:
                await session.execute(select(ApiUser.id))  # opens the transaction before either inserts
                await both_saw_no_users.wait()
                created = await accounts.bootstrap_admin(session, "admin", ADMIN_PASSWORD)
                await session.commit()
                return created

        results = await asyncio.gather(replica(), replica())
        async with runtime.sessionmaker() as session:
            names = (await session.scalars(select(ApiUser.username))).all()
    assert sorted(results) == [False, True]
    assert names == ["admin"]


async def test_a_verified_key_is_trusted_for_the_cache_period_then_read_again(sqlite_url: str) -> None:
    from api_gateway.accounts import Accounts
    from common.clock import FixedClock

    clock = FixedClock(datetime(2024, 3, 4, tzinfo=UTC))
    runtime = Runtime.from_settings(RuntimeSettings(mode=Mode.ALLINONE, database_url=SecretStr(sqlite_url)))
    async with runtime:
        accounts = Accounts(clock, TokenIssuer("s" * 40, "test", timedelta(minutes=5)), key_cache_seconds=5)
        async with runtime.sessionmaker.begin() as session:
            created = await accounts.create_key(session, "bot", Role.TRADER, None)
        assert accounts.cached_key(created.plaintext) is None  # never verified yet
        async with runtime.sessionmaker.begin() as session:
            principal = await accounts.authenticate_key(session, created.plaintext)
        assert accounts.cached_key(created.plaintext) == principal
        clock.advance(timedelta(seconds=5))
        assert accounts.cached_key(created.plaintext) is None  # stale: the database decides again
        async with runtime.sessionmaker.begin() as session:
            await accounts.authenticate_key(session, created.plaintext)
            await accounts.revoke_key(session, created.record.id)
        assert accounts.cached_key(created.plaintext) is None  # revoked here: forgotten at once
