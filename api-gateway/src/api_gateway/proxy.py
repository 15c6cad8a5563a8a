"""Forwarding one request to the service that owns it, per the routing table.

What goes up: method, path parameters, query, body, and the caller's headers minus hop-by-hop
headers and credentials, plus the request/correlation ids and the caller's identity
(``X-Tradebot-Role``, ``X-Tradebot-Subject`` and, for the trader's audit log, the same
subject as ``X-Tradebot-User``), which only the gateway may set.

What comes back: the service's answer as is for 1xx-4xx; a 5xx becomes a 502 (or a 503 when
the service said it is temporarily unavailable) without the service's body; a service that
cannot be reached or does not answer in time is a 503 ``upstream_unavailable``.

Failover: a connection that could not be made never delivered the request, so any method
moves on to the next replica. A timeout or a 5xx after delivery is retried on the next
replica only for idempotent reads.
"""

from __future__ import annotations

from typing import ClassVar

import httpx
import structlog
from fastapi import Request, Response
from prometheus_client import Counter

from api_gateway.roles import Principal
from api_gateway.routing import Route
from api_gateway.upstreams import Replica, ReplicaSet, Upstreams
from common.errors import Retryable, Unavailable

log = structlog.get_logger(__name__)

UPSTREAM_REQUESTS = Counter(
    "tradebot_gateway_upstream_requests_total", "Requests the gateway sent to services", ["service", "outcome"]
)

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade"}
)  # fmt: skip
# Credentials stay at the gateway; ids and identity are set by the gateway, never by the caller.
_DROP_UP = HOP_BY_HOP | {
    "host", "content-length", "authorization", "x-api-key", "cookie", "x-request-id", "x-correlation-id",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
}  # fmt: skip
_DROP_DOWN = HOP_BY_HOP | {
    "content-length", "content-encoding", "server", "date", "set-cookie", "x-request-id", "x-correlation-id",
}  # fmt: skip
IDENTITY_PREFIX = "x-tradebot-"


class UpstreamUnavailable(Unavailable):
    code = "upstream_unavailable"


class BadGateway(Retryable):
    status_code: ClassVar[int] = 502
    code: ClassVar[str] = "bad_gateway"


def _connection_tokens(headers: httpx.Headers | dict[str, str], name: str = "connection") -> set[str]:
    value = headers.get(name) or ""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def upstream_headers(request: Request, principal: Principal) -> dict[str, str]:
    listed = _connection_tokens(dict(request.headers))
    headers = {
        name: value
        for name, value in request.headers.items()
        if name not in _DROP_UP and name not in listed and not name.startswith(IDENTITY_PREFIX)
    }
    context = structlog.contextvars.get_contextvars()
    if request_id := context.get("request_id"):
        headers["x-request-id"] = str(request_id)
    if correlation_id := context.get("correlation_id"):
        headers["x-correlation-id"] = str(correlation_id)
    if request.client is not None:
        headers["x-forwarded-for"] = request.client.host
    headers["x-forwarded-proto"] = request.url.scheme
    headers["x-tradebot-role"] = principal.role.value
    headers["x-tradebot-subject"] = principal.subject
    # The trader's audit log reads the actor from X-Tradebot-User.
    headers["x-tradebot-user"] = principal.subject
    return headers


def downstream_headers(response: httpx.Response) -> dict[str, str]:
    listed = _connection_tokens(response.headers)
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower() not in _DROP_DOWN and name.lower() not in listed
    }


class Forwarder:
    """Sends table routes to their services over one pooled client."""

    def __init__(self, client: httpx.AsyncClient, upstreams: Upstreams, connect_timeout: float) -> None:
        self.client = client
        self.upstreams = upstreams
        self.connect_timeout = connect_timeout

    async def forward(self, route: Route, request: Request, principal: Principal) -> Response:
        replicas = self.upstreams.get(route.service)
        if replicas is None:
            log.error("api_gateway.upstream_not_configured", service=route.service)
            raise self._unavailable(route, "not_configured")
        body = await request.body()
        headers = upstream_headers(request, principal)
        path = route.upstream_url_path({k: str(v) for k, v in request.path_params.items()})
        query = request.url.query
        timeout = httpx.Timeout(route.timeout, connect=min(self.connect_timeout, route.timeout))
        order = replicas.order()
        reason = "connection_failed"
        for position, replica in enumerate(order):
            last = position == len(order) - 1
            url = f"{replica.url}{path}" + (f"?{query}" if query else "")
            try:
                response = await self.client.request(
                    route.forwarded_method, url, content=body or None, headers=headers, timeout=timeout
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                self._failed(replicas, replica, route, "connection_failed", exc)
                continue
            except httpx.TransportError as exc:
                # Timeouts and broken connections after sending: the service may have acted.
                reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_lost"
                self._failed(replicas, replica, route, reason, exc)
                if route.retry:
                    continue
                raise self._unavailable(route, reason) from exc
            if response.status_code >= 500:
                log.warning(
                    "api_gateway.upstream_error",
                    service=route.service,
                    replica=replica.url,
                    status=response.status_code,
                    route=f"{route.method} {route.path}",
                )
                if route.retry and not last:
                    UPSTREAM_REQUESTS.labels(route.service, "retried_5xx").inc()
                    continue
                UPSTREAM_REQUESTS.labels(route.service, f"{response.status_code // 100}xx").inc()
                raise self._server_error(route, response)
            replicas.mark_ok(replica)
            UPSTREAM_REQUESTS.labels(route.service, f"{response.status_code // 100}xx").inc()
            return Response(
                content=response.content, status_code=response.status_code, headers=downstream_headers(response)
            )
        raise self._unavailable(route, reason)

    def _failed(self, replicas: ReplicaSet, replica: Replica, route: Route, reason: str, exc: Exception) -> None:
        UPSTREAM_REQUESTS.labels(route.service, reason).inc()
        replicas.mark_failed(replica, f"{reason}: {type(exc).__name__}")

    @staticmethod
    def _unavailable(route: Route, reason: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(f"{route.service} is unavailable", detail={"reason": reason})

    @staticmethod
    def _server_error(route: Route, response: httpx.Response) -> Retryable:
        if response.status_code == 503:
            retry_after = response.headers.get("retry-after")
            headers = {"Retry-After": retry_after} if retry_after and retry_after.isdigit() else {}
            return UpstreamUnavailable(
                f"{route.service} is temporarily unavailable", detail={"reason": "service_unavailable"},
                headers=headers,
            )  # fmt: skip
        return BadGateway(f"{route.service} failed to handle the request", detail={"reason": "upstream_error"})
