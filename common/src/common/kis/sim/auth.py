"""Access tokens, WebSocket approval keys and per-appkey token buckets (kis-api.md §2, §6.1).

Token lifetimes, the 6-hour reuse window and the one-new-token-a-minute throttle run on the
simulated clock (the expiry a client sees is in simulated time); call-rate buckets run on the
wall clock, because they limit what a client does per real second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.clock import Clock, to_kst
from common.kis.sim import messages as m
from common.kis.sim.settings import SimAccount, SimulatorSettings


class TokenBucket:
    """``rate`` calls per second per key, with a burst of one second's worth (at least one call)."""

    def __init__(self, rate: float, wall: Clock) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._wall = wall
        self._state: dict[str, tuple[float, datetime]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        now = self._wall.now()
        with self._lock:
            tokens, last = self._state.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last).total_seconds() * self.rate)
            if tokens < 1.0:
                self._state[key] = (tokens, now)
                return False
            self._state[key] = (tokens - 1.0, now)
            return True


@dataclass(slots=True)
class AccessToken:
    value: str
    appkey: str
    issued_at: datetime
    expires_at: datetime
    revoked: bool = False

    def response(self) -> dict[str, str | int]:
        remaining = max(0, round((self.expires_at - self.issued_at).total_seconds()))
        return {
            "access_token": self.value,
            "access_token_token_expired": to_kst(self.expires_at).strftime("%Y-%m-%d %H:%M:%S"),
            "token_type": "Bearer",
            "expires_in": remaining,
        }


class TokenThrottled(Exception):
    """A new token was asked for within the minimum interval (EGW00133)."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenBook:
    """Issues, re-issues, checks and revokes access tokens."""

    def __init__(self, settings: SimulatorSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._tokens: dict[str, AccessToken] = {}
        self._last_new: dict[str, datetime] = {}
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def _mint(self, account: SimAccount, now: datetime, expires: datetime) -> str:
        header = {"typ": "JWT", "alg": "HS512"}
        claims = {
            "sub": "token",
            "aud": account.appkey,
            "prdt_cd": "",
            "iss": "unogw",
            "exp": int(expires.timestamp()),
            "iat": int(now.timestamp()),
            "jti": uuid.uuid4().hex + uuid.uuid4().hex,
        }
        head = _b64url(json.dumps(header, separators=(",", ":")).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._signing_key, f"{head}.{body}".encode(), hashlib.sha512).digest()
        return f"{head}.{body}.{_b64url(signature)}"

    def issue(self, account: SimAccount) -> AccessToken:
        """The current token when it is young enough, else a new one unless throttled."""
        now = self._clock.now()
        reuse = timedelta(seconds=self._settings.token_reuse_seconds)
        with self._lock:
            live = [
                t
                for t in self._tokens.values()
                if t.appkey == account.appkey and not t.revoked and t.expires_at > now
            ]
            if live:
                newest = max(live, key=lambda t: t.issued_at)
                if now - newest.issued_at < reuse:
                    return newest
            last = self._last_new.get(account.appkey)
            if last is not None and now - last < timedelta(seconds=self._settings.token_min_interval_seconds):
                raise TokenThrottled()
            expires = now + timedelta(seconds=self._settings.token_lifetime_seconds)
            token = AccessToken(self._mint(account, now, expires), account.appkey, now, expires)
            self._tokens[token.value] = token
            self._last_new[account.appkey] = now
            return token

    def check(self, value: str, appkey: str) -> None:
        """Raise the gateway error a request with this bearer token deserves, if any."""
        with self._lock:
            token = self._tokens.get(value)
            if token is None or token.revoked or token.appkey != appkey:
                raise m.GatewayError(m.TOKEN_INVALID)
            if token.expires_at <= self._clock.now():
                raise m.GatewayError(m.TOKEN_EXPIRED)

    def revoke(self, value: str, appkey: str) -> bool:
        with self._lock:
            token = self._tokens.get(value)
            if token is None or token.appkey != appkey or token.revoked:
                return False
            token.revoked = True
            return True

    def expire_all(self) -> int:
        """Fault injection: every live token expires now, and a new one may be issued at once."""
        now = self._clock.now()
        count = 0
        with self._lock:
            for token in self._tokens.values():
                if not token.revoked and token.expires_at > now:
                    token.expires_at = now
                    count += 1
            self._last_new.clear()
        return count


class ApprovalBook:
    """WebSocket approval keys: each issuance is a new key bound to the app key's account."""

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def issue(self, appkey: str) -> str:
        key = str(uuid.uuid4())
        with self._lock:
            self._keys[key] = appkey
        return key

    def appkey_for(self, approval_key: str) -> str | None:
        with self._lock:
            return self._keys.get(approval_key)
