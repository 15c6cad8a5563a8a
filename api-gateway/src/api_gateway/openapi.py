"""One OpenAPI document for the public API: the gateway's own routes plus every table route.

Table routes get a generic description from the table (path, method, role as a security
requirement, summary). When a service answers ``/openapi.json``, its parameters, request body
and responses for that operation are merged in, with its component schemas renamed
``<service>.<Name>`` so that services cannot collide. Service documents are fetched at start
and again on demand once older than the cache period; one that cannot be fetched leaves the
generic description in place.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api_gateway.roles import Role
from api_gateway.routes import security
from api_gateway.routing import Route
from api_gateway.upstreams import Upstreams

log = structlog.get_logger(__name__)

Json = dict[str, Any]
_REF_PREFIX = "#/components/"
# Tried again sooner than a document that was fetched.
FAILED_RETRY_SECONDS = 10.0

ERROR_SCHEMA: Json = {
    "type": "object",
    "title": "ErrorBody",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "detail": {}},
}
GATEWAY_RESPONSES: dict[str, str] = {
    "401": "no or invalid credentials",
    "403": "the caller's role is not enough",
    "413": "request body too large",
    "429": "rate limited; see Retry-After",
    "502": "the service failed (its error is not shown)",
    "503": "the service is unavailable or did not answer in time",
}
SECURITY_SCHEMES: Json = {
    "OAuth2Password": {
        "type": "oauth2",
        "description": "log in with a username and password; roles are ordered viewer < trader < admin",
        "flows": {
            "password": {
                "tokenUrl": "/api/v1/auth/token",
                "scopes": {r.value: f"the {r.value} role (or higher)" for r in Role},
            }
        },
    },
    "APIKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "APIKeyBearer": {"type": "http", "scheme": "bearer", "description": "an API key (tb_…) as a bearer token"},
}


class ServiceDocuments:
    """Each service's ``/openapi.json``, cached with a refresh period."""

    def __init__(
        self,
        upstreams: Upstreams,
        timeout: float,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = upstreams
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self.documents: dict[str, Json] = {}
        self._next_fetch: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def refresh(self, session: aiohttp.ClientSession, *, force: bool = False) -> None:
        async with self._lock:
            now = self.monotonic()
            due = [n for n in self.upstreams.names() if force or self._next_fetch.get(n, 0.0) <= now]
            await asyncio.gather(*(self._fetch(session, name) for name in due))

    async def _fetch(self, session: aiohttp.ClientSession, service: str) -> None:
        replicas = self.upstreams.sets[service]
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        for replica in replicas.order():
            try:
                async with session.get(f"{replica.url}/openapi.json", timeout=timeout) as response:
                    document = json.loads(await response.read()) if response.status == 200 else None
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                error = type(exc).__name__
                log.info("api_gateway.openapi_fetch_failed", service=service, replica=replica.url, error=error)
                continue
            if isinstance(document, dict) and isinstance(document.get("paths"), dict):
                self.documents[service] = document
                self._next_fetch[service] = self.monotonic() + self.cache_seconds
                return
        self._next_fetch[service] = self.monotonic() + min(FAILED_RETRY_SECONDS, self.cache_seconds)


def build_document(app: FastAPI, routes: tuple[Route, ...], documents: dict[str, Json]) -> Json:
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components: Json = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components.setdefault("schemas", {})["ErrorBody"] = ERROR_SCHEMA
    paths: Json = document.setdefault("paths", {})
    for route in routes:
        operation = _generic_operation(route)
        upstream = documents.get(route.service)
        if upstream is not None:
            _merge_upstream(operation, route, upstream, components)
        paths.setdefault(route.public_path, {})[route.method.lower()] = operation
    return document


def _generic_operation(route: Route) -> Json:
    responses: Json = {"200": {"description": "the service's answer"}}
    for code, description in GATEWAY_RESPONSES.items():
        responses[code] = _error_response(description)
    responses["404"] = _error_response("not found (passed through from the service)")
    responses["422"] = _error_response("invalid input (passed through from the service)")
    operation: Json = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "description": (
            f"Forwarded to {route.service} `{route.forwarded_method} {route.upstream_path}`. "
            f"Needs the {route.role.value} role or higher."
        ),
        "tags": [route.tag],
        **security(route.role),
        "x-upstream": {"service": route.service, "path": route.upstream_path, "timeout_seconds": route.timeout},
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in route.params
        ],
        "responses": responses,
    }
    if route.method in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {}}}}
    return operation


def _error_response(description: str) -> Json:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _merge_upstream(operation: Json, route: Route, upstream: Json, components: Json) -> None:
    source = (upstream.get("paths") or {}).get(route.upstream_path, {}).get(route.forwarded_method.lower())
    if not isinstance(source, dict):
        return
    renamed = _import_refs(source, route.service, upstream.get("components") or {}, components)
    if isinstance(renamed.get("parameters"), list):
        operation["parameters"] = [p for p in renamed["parameters"] if isinstance(p, dict)]
    if "requestBody" in renamed:
        operation["requestBody"] = renamed["requestBody"]
    elif "requestBody" in operation:
        del operation["requestBody"]
    responses = renamed.get("responses")
    if isinstance(responses, dict):
        merged = {str(code): value for code, value in responses.items() if not str(code).startswith("5")}
        for code, value in operation["responses"].items():
            merged.setdefault(code, value)
        operation["responses"] = merged
    if isinstance(renamed.get("description"), str):
        operation["description"] = f"{operation['description']}\n\n{renamed['description']}"


def _import_refs(node: Json, service: str, source_components: Json, target_components: Json) -> Json:
    """A copy of ``node`` whose ``$ref``s point at renamed copies of the service's components."""
    pending: list[tuple[str, str]] = []

    def rename(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, inner in value.items():
                if key == "$ref" and isinstance(inner, str) and inner.startswith(_REF_PREFIX):
                    kind, _, name = inner[len(_REF_PREFIX) :].partition("/")
                    pending.append((kind, name))
                    out[key] = f"{_REF_PREFIX}{kind}/{service}.{name}"
                else:
                    out[key] = rename(inner)
            return out
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    result: Json = rename(copy.deepcopy(node))
    done: set[tuple[str, str]] = set()
    while pending:
        kind, name = pending.pop()
        if (kind, name) in done:
            continue
        done.add((kind, name))
        found = (source_components.get(kind) or {}).get(name)
        if found is None:
            continue
        target_components.setdefault(kind, {})[f"{service}.{name}"] = rename(found)
    return result
