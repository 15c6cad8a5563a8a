"""Access tokens, WebSocket approval keys and revocation (kis-api.md §2).

``TokenManager`` hands out the shared access token of one appkey:

1. a token cached in this object or in the ``TokenStore`` is reused while more than
   ``token_refresh_margin_seconds`` (10 min) of validity remain;
2. otherwise it takes the store's cross-process lock, looks again (another process may have
   issued meanwhile) and only then calls ``/oauth2/tokenP`` — never twice within
   ``token_issue_interval_seconds`` (one minute) per appkey, waiting out the rest of the minute
   when needed (bounded by ``token_issue_max_wait_seconds``);
3. ``invalidate`` drops a token the gateway called expired/invalid (EGW00123/EGW00121) unless
   another process already replaced it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from common.clock import KST, Clock
from common.kis.errors import (
    INVALID_APPKEY,
    TOKEN_THROTTLED,
    KisOperational,
    KisUnavailable,
    TokenIssueThrottled,
)
from common.kis.ratelimit import shared_bucket
from common.kis.settings import KisSettings
from common.kis.tokens import StoredToken, TokenStore

log = structlog.get_logger(__name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def _auth_failure(response: httpx.Response, what: str) -> Exception:
    """Translate a non-200 answer of an /oauth2 endpoint (403 ``error_code`` shape, kis-api.md §2.1)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error_code") or body.get("msg_cd") or "") or None
    text = str(body.get("error_description") or body.get("msg1") or "").strip() or f"{what} failed"
    status = response.status_code
    if code == TOKEN_THROTTLED:
        return TokenIssueThrottled(text, retry_after=60.0, msg_cd=code, http_status=status)
    if code == INVALID_APPKEY:
        return KisOperational(f"{what}: invalid appkey ({text})", msg_cd=code, http_status=status)
    if status >= 500:
        return KisUnavailable(f"{what}: {text}", msg_cd=code, http_status=status)
    return KisOperational(f"{what}: {text}", msg_cd=code, http_status=status)


class TokenManager:
    """The access token of one appkey/domain, shared through a ``TokenStore``."""

    def __init__(self, settings: KisSettings, http: httpx.AsyncClient, store: TokenStore, clock: Clock) -> None:
        self._settings = settings
        self._http = http
        self._store = store
        self._clock = clock
        self._key_id = settings.key_id
        self._cached: StoredToken | None = None
        self._lock = asyncio.Lock()
        # /oauth2 endpoints allow one call a second per appkey (kis-api.md §6.1).
        self._bucket = shared_bucket(self._key_id, "auth", 1.0, 1, clock)
        self.issued_count = 0

    @property
    def _margin(self) -> float:
        return self._settings.token_refresh_margin_seconds

    @property
    def _log_key(self) -> str:
        return self._key_id[:12]

    async def access_token(self) -> str:
        """A token with more than the refresh margin left, issuing one only when nobody has."""
        cached = self._cached
        if cached is not None and cached.usable(self._clock.now(), self._margin):
            return cached.access_token
        async with self._lock:
            now = self._clock.now()
            if self._cached is not None and self._cached.usable(now, self._margin):
                return self._cached.access_token
            stored = await self._store.load(self._key_id)
            if stored is not None and stored.usable(now, self._margin):
                log.info("kis.token_reused", key=self._log_key, expires_at=stored.expires_at.isoformat())
                self._cached = stored
                return stored.access_token
            async with self._store.exclusive(self._key_id) as txn:
                stored = await txn.load()
                now = self._clock.now()
                if stored is not None and stored.usable(now, self._margin):
                    log.info("kis.token_reused", key=self._log_key, expires_at=stored.expires_at.isoformat())
                    self._cached = stored
                    return stored.access_token
                if stored is not None:
                    wait = self._settings.token_issue_interval_seconds - (now - stored.issued_at).total_seconds()
                    if wait > 0:
                        if stored.usable(now):
                            # Close to expiry but still valid, and a new one may not be issued yet.
                            self._cached = stored
                            return stored.access_token
                        if wait > self._settings.token_issue_max_wait_seconds:
                            raise TokenIssueThrottled(
                                "a KIS access token was issued less than a minute ago; retry later",
                                retry_after=wait,
                            )
                        log.info("kis.token_issue_wait", key=self._log_key, wait_seconds=round(wait, 3))
                        await self._clock.sleep(wait)
                token = await self._issue()
                await txn.save(token)
                self._cached = token
                return token.access_token

    async def invalidate(self, access_token: str) -> None:
        """Forget ``access_token`` (the gateway rejected it), unless it was already replaced."""
        async with self._lock:
            if self._cached is not None and self._cached.access_token == access_token:
                self._cached = None
            async with self._store.exclusive(self._key_id) as txn:
                current = await txn.load()
                if current is not None and current.access_token == access_token:
                    await txn.save(current.expired_at(self._clock.now()))
                    log.info("kis.token_invalidated", key=self._log_key)

    async def _issue(self) -> StoredToken:
        settings = self._settings
        body = {
            "grant_type": "client_credentials",
            "appkey": settings.appkey.get_secret_value(),
            "appsecret": settings.appsecret.get_secret_value(),
        }
        response = await self._post("/oauth2/tokenP", body, "token issuance")
        data = self._json(response, "token issuance")
        access_token = str(data.get("access_token") or "")
        if not access_token:
            raise KisOperational("token issuance: response has no access_token", http_status=response.status_code)
        now = self._clock.now()
        expires_at = _parse_expiry(data.get("access_token_token_expired"))
        if expires_at is None:
            expires_at = now + timedelta(seconds=float(data.get("expires_in") or 86400))
        self.issued_count += 1
        log.info("kis.token_issued", key=self._log_key, domain=settings.domain.value, expires_at=expires_at.isoformat())
        return StoredToken(
            key_id=self._key_id,
            domain=settings.domain.value,
            access_token=access_token,
            expires_at=expires_at,
            issued_at=now,
        )

    async def approval_key(self) -> str:
        """A WebSocket approval key from ``/oauth2/Approval`` (the secret goes in ``secretkey``)."""
        settings = self._settings
        body = {
            "grant_type": "client_credentials",
            "appkey": settings.appkey.get_secret_value(),
            "secretkey": settings.appsecret.get_secret_value(),
        }
        response = await self._post("/oauth2/Approval", body, "approval key issuance")
        key = str(self._json(response, "approval key issuance").get("approval_key") or "")
        if not key:
            raise KisOperational("approval key issuance: response has no approval_key")
        log.info("kis.approval_key_issued", key=self._log_key)
        return key

    async def revoke(self) -> None:
        """Revoke the current token at KIS (``/oauth2/revokeP``) and drop it from the store."""
        token = self._cached or await self._store.load(self._key_id)
        if token is None or not token.usable(self._clock.now()):
            return
        settings = self._settings
        body = {
            "appkey": settings.appkey.get_secret_value(),
            "appsecret": settings.appsecret.get_secret_value(),
            "token": token.access_token,
        }
        response = await self._post("/oauth2/revokeP", body, "token revocation")
        data = self._json(response, "token revocation")
        if str(data.get("code", "200")) != "200":
            raise KisOperational(f"token revocation: {data.get('message', 'refused')}")
        await self.invalidate(token.access_token)
        log.info("kis.token_revoked", key=self._log_key)

    async def _post(self, path: str, body: dict[str, str], what: str) -> httpx.Response:
        await self._bucket.acquire()
        try:
            response = await self._http.post(
                self._settings.rest_url + path, json=body, headers={"content-type": JSON_CONTENT_TYPE}
            )
        except httpx.HTTPError as exc:
            raise KisUnavailable(f"{what}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _auth_failure(response, what)
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise KisUnavailable(f"{what}: response is not JSON", http_status=response.status_code) from exc
        if not isinstance(data, dict):
            raise KisUnavailable(f"{what}: response is not a JSON object", http_status=response.status_code)
        return data


def _parse_expiry(value: Any) -> datetime | None:
    """``"YYYY-MM-DD HH:MM:SS"`` in KST as an aware datetime."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=KST)
    except ValueError:
        return None
