"""Users and API keys: creation, listing, revocation, authentication, the first admin.

No HTTP and no SQL here; the caller owns the transaction (the request, or the CLI).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api_gateway import repository
from api_gateway.models import ApiKey, ApiUser
from api_gateway.roles import Principal, Role
from api_gateway.security import (
    TokenIssuer,
    api_key_digest,
    api_key_matches,
    generate_api_key,
    hash_password,
    parse_api_key,
    unauthorized,
    verify_password,
)
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound

log = structlog.get_logger(__name__)

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
# last_used_at is a hint, not an audit trail: writing it on every request would turn each
# read into a write.
KEY_TOUCH_INTERVAL = timedelta(seconds=60)
MAX_CACHED_KEYS = 10_000


def check_username(username: str) -> str:
    if not USERNAME.match(username):
        raise InvalidInput("username must be 3-64 characters of letters, digits, '_', '.', '@' or '-'")
    return username


def check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters")
    return password


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    role: Role


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKey
    plaintext: str


class Accounts:
    """Users (password → JWT) and API keys, on a session the caller commits."""

    def __init__(self, clock: Clock, tokens: TokenIssuer, *, key_cache_seconds: float = 0.0) -> None:
        self.clock = clock
        self.tokens = tokens
        # Verified API keys (by digest) are trusted this long without a database read; a key
        # revoked on another gateway replica keeps working for at most this long there.
        self.key_cache = timedelta(seconds=key_cache_seconds)
        self._verified: dict[str, tuple[Principal, datetime]] = {}

    def cached_key(self, plaintext: str) -> Principal | None:
        """The principal of a key verified within the cache period, without touching the database."""
        entry = self._verified.get(api_key_digest(plaintext)) if self.key_cache else None
        if entry is None:
            return None
        principal, verified_at = entry
        if self.clock.now() - verified_at >= self.key_cache:
            return None
        return principal

    def _remember_key(self, plaintext: str, principal: Principal) -> None:
        if not self.key_cache:
            return
        if len(self._verified) >= MAX_CACHED_KEYS:
            self._verified.clear()  # crude but bounded; keys are re-verified on their next call
        self._verified[api_key_digest(plaintext)] = (principal, self.clock.now())

    async def create_user(self, session: AsyncSession, username: str, password: str, role: Role) -> ApiUser:
        check_username(username)
        check_password(password)
        if await repository.user_by_name(session, username) is not None:
            raise Conflict(f"user {username} already exists")
        password_hash = await asyncio.to_thread(hash_password, password)
        user = ApiUser(
            id=uuid.uuid4(),
            username=username,
            password_hash=password_hash,
            role=role.value,
            disabled=False,
            created_at=self.clock.now(),
        )
        await repository.add_user(session, user)
        log.info("api_gateway.user_created", username=username, role=role.value)
        return user

    async def list_users(self, session: AsyncSession) -> Sequence[ApiUser]:
        return await repository.list_users(session)

    async def disable_user(self, session: AsyncSession, username: str) -> ApiUser:
        user = await repository.user_by_name(session, username)
        if user is None:
            raise NotFound(f"no user {username}")
        if user.disabled:
            return user
        if user.role == Role.ADMIN and await repository.count_active_admins(session) <= 1:
            raise Conflict("cannot disable the last active admin")
        user.disabled = True
        await session.flush()
        log.info("api_gateway.user_disabled", username=username)
        return user

    async def login(self, session: AsyncSession, username: str, password: str) -> IssuedToken:
        user = await repository.user_by_name(session, username) if USERNAME.match(username) else None
        valid = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
        if user is None or not valid or user.disabled:
            log.info("api_gateway.login_failed", username=username)
            raise unauthorized("incorrect username or password")
        now = self.clock.now()
        await repository.touch_user_login(session, user.id, now)
        role = Role(user.role)
        token = self.tokens.issue(user.username, role, now)
        return IssuedToken(access_token=token, expires_in=int(self.tokens.ttl.total_seconds()), role=role)

    async def create_key(self, session: AsyncSession, name: str, role: Role, created_by: str | None) -> CreatedKey:
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise InvalidInput("key name must be 1-100 characters")
        new = generate_api_key()
        record = ApiKey(
            id=uuid.uuid4(),
            name=name,
            prefix=new.prefix,
            key_hash=new.digest,
            role=role.value,
            created_at=self.clock.now(),
            created_by=created_by,
        )
        await repository.add_key(session, record)
        log.info("api_gateway.key_created", key_id=str(record.id), prefix=new.prefix, role=role.value)
        return CreatedKey(record=record, plaintext=new.plaintext)

    async def list_keys(self, session: AsyncSession, *, include_revoked: bool = False) -> Sequence[ApiKey]:
        return await repository.list_keys(session, include_revoked=include_revoked)

    async def revoke_key(self, session: AsyncSession, key_id: uuid.UUID) -> ApiKey:
        key = await repository.key_by_id(session, key_id)
        if key is None:
            raise NotFound(f"no API key {key_id}")
        self._verified = {d: e for d, e in self._verified.items() if e[0].name != str(key_id)}
        if key.revoked_at is None:
            key.revoked_at = self.clock.now()
            await session.flush()
            log.info("api_gateway.key_revoked", key_id=str(key_id), prefix=key.prefix)
        return key

    async def authenticate_key(self, session: AsyncSession, plaintext: str) -> Principal:
        prefix = parse_api_key(plaintext)
        key = await repository.key_by_prefix(session, prefix) if prefix else None
        if key is None or not api_key_matches(plaintext, key.key_hash):
            raise unauthorized("invalid API key", "invalid_token")
        if key.revoked_at is not None:
            raise unauthorized("API key revoked", "invalid_token")
        now = self.clock.now()
        if key.last_used_at is None or now - key.last_used_at >= KEY_TOUCH_INTERVAL:
            await repository.touch_key(session, key.id, now)
        principal = Principal(kind="key", name=str(key.id), role=Role(key.role))
        self._remember_key(plaintext, principal)
        return principal

    async def bootstrap_admin(self, session: AsyncSession, username: str, password: str) -> bool:
        """Create the first admin if there are no users at all; True if it was created."""
        if await repository.count_users(session) > 0:
            return False
        try:
            async with session.begin_nested():
                await self.create_user(session, username, password, Role.ADMIN)
        except IntegrityError:
            # Another gateway replica starting at the same moment created it first.
            return False
        log.info("api_gateway.admin_bootstrapped", username=username)
        return True
