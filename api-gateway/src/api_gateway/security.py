"""Credentials: argon2 password hashes, HS256 JWTs and API keys (hashed at rest)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api_gateway.roles import Principal, Role
from common.errors import Unauthorized

API_KEY_PREFIX = "tb_"
# tb_<8 hex: lookup prefix>_<secret>; the prefix is shown in listings, the secret never.
_API_KEY = re.compile(r"^tb_([0-9a-f]{8})_([A-Za-z0-9_-]{32,64})$")
_hasher = PasswordHasher()
# Verified against when a username does not exist, so both paths take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MAX_CACHED_TOKENS = 10_000


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-ish time: an unknown user still costs one argon2 verification."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewApiKey:
    """A freshly generated key: ``plaintext`` is shown once and never stored."""

    plaintext: str
    prefix: str
    digest: str


def generate_api_key() -> NewApiKey:
    prefix = secrets.token_hex(4)
    plaintext = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(plaintext=plaintext, prefix=prefix, digest=api_key_digest(plaintext))


def api_key_digest(plaintext: str) -> str:
    # A key has 256 bits of entropy: a plain sha256 is enough and keeps per-request checks cheap.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_api_key(value: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    match = _API_KEY.match(value)
    return match.group(1) if match else None


def api_key_matches(plaintext: str, digest: str) -> bool:
    return hmac.compare_digest(api_key_digest(plaintext), digest)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(API_KEY_PREFIX)


class TokenIssuer:
    """Short-lived HS256 access tokens carrying the user's name and role.

    A verified token is remembered until it expires (the least recently used of at most
    ``MAX_CACHED_TOKENS`` go first): it cannot change, and nothing revokes it before then, so
    checking its signature again on every request would change nothing. The tokens are kept in
    this process's memory only.
    """

    def __init__(self, secret: str, issuer: str, ttl: timedelta) -> None:
        self._secret = secret
        self.issuer = issuer
        self.ttl = ttl
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def issue(self, username: str, role: Role, now: datetime) -> str:
        claims = {
            "sub": username,
            "role": role.value,
            "iss": self.issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            # PyJWT's own rule: a token is valid while the wall clock is before its exp.
            if time.time() < expires_at:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires_at = self._decode(token)
        self._verified[token] = (principal, expires_at)
        if len(self._verified) > MAX_CACHED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self.issuer,
                options={"require": ["sub", "exp", "iat", "iss", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired", headers=_challenge("invalid_token")) from None
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid access token", headers=_challenge("invalid_token")) from None
        try:
            role = Role(claims["role"])
        except ValueError:
            raise Unauthorized("invalid access token", headers=_challenge("invalid_token")) from None
        return Principal(kind="user", name=str(claims["sub"]), role=role), float(claims["exp"])


def _challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="trading-bot"'
    if error:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


def unauthorized(message: str, error: str | None = None) -> Unauthorized:
    return Unauthorized(message, headers=_challenge(error))
