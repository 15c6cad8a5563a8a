"""The REST transport: headers, rate limit, retries, token refresh, paging, error translation.

kis-api.md §3. Reads are retried on network errors and 5xx with exponential back-off; orders
are never resent once they may have left this process — a timeout or broken connection after
sending raises ``OrderOutcomeUnknown`` so the trader queries the broker before any retry.
Gateway refusals that guarantee the request was not processed (EGW00201 rate limit,
EGW00123/EGW00121 token) are retried for orders too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import structlog

from common.clock import Clock, SystemClock
from common.kis.auth import JSON_CONTENT_TYPE, TokenManager
from common.kis.errors import (
    RATE_LIMIT_CODES,
    TOKEN_CODES,
    KisError,
    KisOperational,
    KisRateLimited,
    KisUnavailable,
    OrderOutcomeUnknown,
    translate,
)
from common.kis.ratelimit import TokenBucket, shared_bucket
from common.kis.settings import KisSettings
from common.kis.tokens import FileTokenStore, TokenStore
from common.metrics import KIS_ERRORS, KIS_REQUESTS

log = structlog.get_logger(__name__)

SYSTEM_CLOCK = SystemClock()
RequestKind = Literal["read", "order"]
MORE_PAGES = frozenset({"F", "M"})


@dataclass(frozen=True)
class KisResponse:
    """A successful (``rt_cd == "0"``) KIS answer and its paging header."""

    body: dict[str, Any]
    tr_cont: str
    status_code: int

    @property
    def msg_cd(self) -> str:
        return str(self.body.get("msg_cd", "")).strip()

    @property
    def msg1(self) -> str:
        return str(self.body.get("msg1", "")).strip()

    @property
    def has_more(self) -> bool:
        return self.tr_cont in MORE_PAGES


class _DropQueryStrings(logging.Filter):
    """httpx logs every request URL at INFO; KIS account queries carry the account number."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(a.copy_with(query=None) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _install_httpx_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _DropQueryStrings) for f in httpx_logger.filters):
        httpx_logger.addFilter(_DropQueryStrings())


def _backoff(settings: KisSettings, attempt: int) -> float:
    return float(min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempt - 1)))


class KisRest:
    """Signed, rate-limited, retrying calls to one KIS domain with one appkey."""

    def __init__(
        self,
        settings: KisSettings,
        *,
        http: httpx.AsyncClient | None = None,
        store: TokenStore | None = None,
        clock: Clock | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        _install_httpx_redaction()
        self.settings = settings
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.read_timeout_seconds, connect=settings.connect_timeout_seconds)
        )
        self.store: TokenStore = store or FileTokenStore(settings.token_cache_path)
        self.tokens = TokenManager(settings, self.http, self.store, self.clock)
        self.limiter = limiter or shared_bucket(
            settings.key_id, "rest", settings.effective_rate_per_second, settings.effective_rate_burst, self.clock
        )

    def __repr__(self) -> str:
        return f"KisRest(domain={self.settings.domain.value!r}, rest_url={self.settings.rest_url!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    def _headers(self, token: str, tr_id: str, tr_cont: str | None, hashkey: str | None) -> dict[str, str]:
        settings = self.settings
        headers = {
            "content-type": JSON_CONTENT_TYPE,
            "authorization": f"Bearer {token}",
            "appkey": settings.appkey.get_secret_value(),
            "appsecret": settings.appsecret.get_secret_value(),
            "tr_id": tr_id,
            "custtype": settings.custtype,
        }
        if tr_cont is not None:
            headers["tr_cont"] = tr_cont
        if hashkey:
            headers["hashkey"] = hashkey
        return headers

    async def hashkey(self, body: Mapping[str, str]) -> str:
        """``HASH`` of an order body from ``/uapi/hashkey`` (optional at KIS, kis-api.md §2.3)."""
        await self.limiter.acquire()
        settings = self.settings
        headers = {
            "content-type": JSON_CONTENT_TYPE,
            "appkey": settings.appkey.get_secret_value(),
            "appsecret": settings.appsecret.get_secret_value(),
        }
        try:
            response = await self.http.post(settings.rest_url + "/uapi/hashkey", json=dict(body), headers=headers)
        except httpx.HTTPError as exc:
            raise KisUnavailable(f"hashkey: {type(exc).__name__}") from exc
        data = self._decode(response)
        value = str(data.get("HASH") or "")
        if response.status_code != 200 or not value:
            message = str(data.get("msg1", "hashkey failed"))
            raise translate(data.get("msg_cd"), message, http_status=response.status_code)
        return value

    async def request(
        self,
        method: Literal["GET", "POST"],
        path: str,
        *,
        tr_id: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, str] | None = None,
        tr_cont: str | None = None,
        kind: RequestKind = "read",
    ) -> KisResponse:
        """One KIS call with every rule of kis-api.md §3 applied; raises ``common.errors`` types."""
        settings = self.settings
        url = settings.rest_url + path
        hashkey = await self.hashkey(body) if kind == "order" and body is not None and settings.use_hashkey else None
        failures = 0
        rate_limited = 0
        token_refreshed = False
        while True:
            token = await self.tokens.access_token()
            await self.limiter.acquire()
            started = self.clock.now()
            try:
                response = await self.http.request(
                    method,
                    url,
                    params=dict(params) if params is not None else None,
                    json=dict(body) if body is not None else None,
                    headers=self._headers(token, tr_id, tr_cont, hashkey),
                )
            except httpx.HTTPError as exc:
                KIS_REQUESTS.labels(tr_id, "transport_error").inc()
                error = self._transport_error(exc, tr_id, kind)
                failures += 1
                if kind == "order" or failures > settings.max_retries:
                    raise error from exc
                await self._retry_pause("kis.retry", tr_id, failures, reason=type(exc).__name__)
                continue

            data = self._decode(response)
            status = response.status_code
            rt_cd = str(data.get("rt_cd", "")).strip() if data else ""
            msg_cd = str(data.get("msg_cd", "")).strip()
            log.debug(
                "kis.request",
                tr_id=tr_id,
                path=path,
                status=status,
                msg_cd=msg_cd or None,
                elapsed_ms=round((self.clock.now() - started).total_seconds() * 1000, 1),
            )
            ok = status == 200 and rt_cd == "0"
            KIS_REQUESTS.labels(tr_id, "ok" if ok else "error").inc()
            if not ok:
                KIS_ERRORS.labels(msg_cd or f"http_{status}").inc()
            if ok:
                return KisResponse(body=data, tr_cont=response.headers.get("tr_cont", "").strip(), status_code=status)

            if msg_cd in TOKEN_CODES and not token_refreshed:
                log.info("kis.token_rejected", tr_id=tr_id, msg_cd=msg_cd)
                await self.tokens.invalidate(token)
                token_refreshed = True
                continue
            if msg_cd in RATE_LIMIT_CODES or status == 429:
                rate_limited += 1
                pause = _backoff(settings, rate_limited)
                if rate_limited > settings.max_retries:
                    raise KisRateLimited(
                        str(data.get("msg1", "rate limited")).strip() or "rate limited",
                        retry_after=pause,
                        msg_cd=msg_cd or None,
                        http_status=status,
                    )
                self.limiter.penalize(pause)
                await self._retry_pause("kis.rate_limited", tr_id, rate_limited, msg_cd=msg_cd or None)
                continue
            if rt_cd:
                # A KIS envelope: the broker gave a definite answer.
                error = translate(msg_cd, str(data.get("msg1", "")), http_status=status, rt_cd=rt_cd)
                if isinstance(error, KisUnavailable):
                    if kind == "order" and not msg_cd.startswith("EGW"):
                        # Only gateway (EGW) refusals prove the order was never processed.
                        raise OrderOutcomeUnknown(
                            f"{tr_id}: {error.message}; query the order before retrying",
                            msg_cd=msg_cd or None,
                            http_status=status,
                        ) from error
                    if kind == "read" and failures < settings.max_retries:
                        failures += 1
                        await self._retry_pause("kis.retry", tr_id, failures, msg_cd=msg_cd or None)
                        continue
                raise error
            if status >= 500:
                if kind == "order":
                    raise OrderOutcomeUnknown(
                        f"HTTP {status} without a KIS answer after sending {tr_id}; query the order before retrying",
                        http_status=status,
                    )
                failures += 1
                if failures > settings.max_retries:
                    raise KisUnavailable(f"KIS answered HTTP {status} to {tr_id}", http_status=status)
                await self._retry_pause("kis.retry", tr_id, failures, reason=f"http {status}")
                continue
            raise KisOperational(f"KIS answered HTTP {status} to {tr_id} ({path})", http_status=status)

    def _transport_error(self, exc: httpx.HTTPError, tr_id: str, kind: RequestKind) -> KisError:
        if kind == "order":
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                return KisUnavailable(f"{tr_id} was not sent: {type(exc).__name__}")
            return OrderOutcomeUnknown(
                f"{tr_id} may have reached KIS ({type(exc).__name__}); query the order before retrying"
            )
        return KisUnavailable(f"KIS unreachable for {tr_id}: {type(exc).__name__}")

    async def _retry_pause(self, event: str, tr_id: str, attempt: int, **fields: Any) -> None:
        pause = _backoff(self.settings, attempt)
        log.warning(event, tr_id=tr_id, attempt=attempt, backoff_seconds=pause, **fields)
        await self.clock.sleep(pause)

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    async def paged(
        self,
        path: str,
        *,
        tr_id: str,
        params: Mapping[str, str],
        ctx_keys: tuple[str, str] = ("CTX_AREA_FK100", "CTX_AREA_NK100"),
        max_pages: int | None = None,
    ) -> list[KisResponse]:
        """Every page of a ``tr_cont`` list call (kis-api.md §3.4): F/M → next with ``N``, D/E → stop."""
        limit = max_pages or self.settings.max_pages
        query = dict(params)
        for key in ctx_keys:
            query.setdefault(key, "")
        pages: list[KisResponse] = []
        tr_cont = ""
        while True:
            page = await self.request("GET", path, tr_id=tr_id, params=query, tr_cont=tr_cont)
            pages.append(page)
            if not page.has_more:
                return pages
            if len(pages) >= limit:
                raise KisOperational(f"{tr_id}: more than {limit} pages; raise max_pages or narrow the query")
            for key in ctx_keys:
                # Passed back verbatim, padding included.
                query[key] = str(page.body.get(key.lower(), page.body.get(key, "")))
            tr_cont = "N"
            log.debug("kis.next_page", tr_id=tr_id, page=len(pages) + 1)
