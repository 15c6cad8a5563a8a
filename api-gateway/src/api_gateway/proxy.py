"""Forwarding one request to the service that owns it, per the routing table.

What goes up: method, path parameters, query (byte for byte), body, and the caller's headers
minus hop-by-hop headers and credentials, plus the request/correlation ids and the caller's
identity (``X-Tradebot-Role``, ``X-Tradebot-Subject`` and, for the trader's audit log, the same
subject as ``X-Tradebot-User``), which only the gateway may set.

What comes back: the service's answer as is for 1xx-4xx; a 5xx becomes a 502 (or a 503 when
the service said it is temporarily unavailable) without the service's body; a service that
cannot be reached or does not answer in time is a 503 ``upstream_unavailable``.

Failover: a connection that could not be made never delivered the request, so any method
moves on to the next replica. A timeout or a 5xx after delivery is retried on the next
replica only for idempotent reads.

The client is aiohttp, not httpx: per request it costs a small fraction of httpx's CPU (see
``docs/benchmarks.md``, api-gateway overhead, 2026-11-21), and the gateway's own CPU is what
it adds to every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import aiohttp
import structlog
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response
from yarl import URL

from api_gateway.roles import Principal
from api_gateway.routing import Route
from api_gateway.upstreams import Replica, ReplicaSet, Upstreams
from common.errors import Retryable, Unavailable

log = structlog.get_logger(__name__)

UPSTREAM_REQUESTS = Counter(
    "tradebot_gateway_upstream_requests_total", "Requests the gateway sent to services", ["service", "outcome"]
)

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer", b"trailers",
     b"transfer-encoding", b"upgrade"}
)  # fmt: skip
# Credentials stay at the gateway; ids and identity are set by the gateway, never by the caller.
_DROP_UP = HOP_BY_HOP | {
    b"host", b"content-length", b"authorization", b"x-api-key", b"cookie", b"x-request-id", b"x-correlation-id",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded",
}  # fmt: skip
_DROP_DOWN = HOP_BY_HOP | {
    b"content-length", b"content-encoding", b"server", b"date", b"set-cookie", b"x-request-id", b"x-correlation-id",
}  # fmt: skip
IDENTITY_PREFIX = b"x-tradebot-"


class UpstreamUnavailable(Unavailable):
    code = "upstream_unavailable"


class BadGateway(Retryable):
    status_code: ClassVar[int] = 502
    code: ClassVar[str] = "bad_gateway"


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names that a ``Connection`` header marks as hop-by-hop."""
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
        if token.strip()
    }


def upstream_headers(request: Request, principal: Principal) -> list[tuple[str, str]]:
    raw: RawHeaders = request.scope["headers"]  # ASGI: names in lower case
    listed = _connection_listed(raw)
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in raw
        if name not in _DROP_UP and name not in listed and not name.startswith(IDENTITY_PREFIX)
    ]
    context = structlog.contextvars.get_contextvars()
    if request_id := context.get("request_id"):
        headers.append(("x-request-id", str(request_id)))
    if correlation_id := context.get("correlation_id"):
        headers.append(("x-correlation-id", str(correlation_id)))
    if request.client is not None:
        headers.append(("x-forwarded-for", request.client.host))
    headers.append(("x-forwarded-proto", request.scope["scheme"]))
    headers.append(("x-tradebot-role", principal.role.value))
    headers.append(("x-tradebot-subject", principal.subject))
    # The trader's audit log reads the actor from X-Tradebot-User.
    headers.append(("x-tradebot-user", principal.subject))
    return headers


def downstream_headers(raw: Sequence[tuple[bytes, bytes]]) -> RawHeaders:
    listed = _connection_listed(raw)
    kept: RawHeaders = []
    for name, value in raw:
        lowered = name.lower()
        if lowered not in _DROP_DOWN and lowered not in listed:
            kept.append((lowered, value))
    return kept


class Forwarder:
    """Sends table routes to their services over one pooled client session."""

    def __init__(self, session: aiohttp.ClientSession, upstreams: Upstreams, connect_timeout: float) -> None:
        self.session = session
        self.upstreams = upstreams
        self.connect_timeout = connect_timeout

    async def forward(self, route: Route, request: Request, principal: Principal) -> Response:
        replicas = self.upstreams.get(route.service)
        if replicas is None:
            log.error("api_gateway.upstream_not_configured", service=route.service)
            raise self._unavailable(route, "not_configured")
        body = await request.body()
        headers = upstream_headers(request, principal)
        path = route.upstream_url_path(request.path_params)
        query = request.scope["query_string"].decode("latin-1")
        timeout = aiohttp.ClientTimeout(total=route.timeout, sock_connect=min(self.connect_timeout, route.timeout))
        order = replicas.order()
        reason = "connection_failed"
        for position, replica in enumerate(order):
            last = position == len(order) - 1
            # Already encoded: sent as the caller wrote it, not re-quoted.
            url = URL(f"{replica.url}{path}" + (f"?{query}" if query else ""), encoded=True)
            try:
                async with self.session.request(
                    route.forwarded_method, url, data=body or None, headers=headers, timeout=timeout,
                    allow_redirects=False,
                ) as upstream:  # fmt: skip
                    content = await upstream.read()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                self._failed(replicas, replica, route, "connection_failed", exc)
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Timeouts and broken connections after sending: the service may have acted.
                reason = "timeout" if isinstance(exc, TimeoutError) else "connection_lost"
                self._failed(replicas, replica, route, reason, exc)
                if route.retry:
                    continue
                raise self._unavailable(route, reason) from exc
            if upstream.status >= 500:
                log.warning(
                    "api_gateway.upstream_error",
                    service=route.service,
                    replica=replica.url,
                    status=upstream.status,
                    route=f"{route.method} {route.path}",
                )
                if route.retry and not last:
                    UPSTREAM_REQUESTS.labels(route.service, "retried_5xx").inc()
                    continue
                UPSTREAM_REQUESTS.labels(route.service, f"{upstream.status // 100}xx").inc()
                raise self._server_error(route, upstream)
            replicas.mark_ok(replica)
            UPSTREAM_REQUESTS.labels(route.service, f"{upstream.status // 100}xx").inc()
            response = Response(content, status_code=upstream.status)
            response.raw_headers += downstream_headers(upstream.raw_headers)
            return response
        raise self._unavailable(route, reason)

    def _failed(self, replicas: ReplicaSet, replica: Replica, route: Route, reason: str, exc: Exception) -> None:
        UPSTREAM_REQUESTS.labels(route.service, reason).inc()
        replicas.mark_failed(replica, f"{reason}: {type(exc).__name__}")

    @staticmethod
    def _unavailable(route: Route, reason: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(f"{route.service} is unavailable", detail={"reason": reason})

    @staticmethod
    def _server_error(route: Route, upstream: aiohttp.ClientResponse) -> Retryable:
        if upstream.status == 503:
            retry_after = upstream.headers.get("retry-after")
            headers = {"Retry-After": retry_after} if retry_after and retry_after.isdigit() else {}
            return UpstreamUnavailable(
                f"{route.service} is temporarily unavailable", detail={"reason": "service_unavailable"},
                headers=headers,
            )  # fmt: skip
        return BadGateway(f"{route.service} failed to handle the request", detail={"reason": "upstream_error"})
