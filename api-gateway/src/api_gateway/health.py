"""Aggregated health: the readiness of every upstream service, asked concurrently."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import BaseModel


class ServiceHealth(BaseModel):
    status: str
    checks: dict[str, str] = {}
    detail: str | None = None


class SystemHealth(BaseModel):
    status: str
    services: dict[str, ServiceHealth]


async def probe(client: httpx.AsyncClient, base_url: str, timeout: float) -> ServiceHealth:
    try:
        response = await client.get(f"{base_url.rstrip('/')}/readyz", timeout=timeout)
    except httpx.TimeoutException:
        return ServiceHealth(status="unreachable", detail="timed out")
    except httpx.HTTPError as exc:
        return ServiceHealth(status="unreachable", detail=type(exc).__name__)
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        return ServiceHealth(status="unreachable", detail=f"HTTP {response.status_code} without a health body")
    raw_checks = body.get("checks")
    checks: dict[str, Any] = raw_checks if isinstance(raw_checks, dict) else {}
    return ServiceHealth(status=str(body.get("status", "unknown")), checks={str(k): str(v) for k, v in checks.items()})


async def system_health(client: httpx.AsyncClient, upstreams: dict[str, str], timeout: float) -> SystemHealth:
    names = sorted(upstreams)
    results = await asyncio.gather(*(probe(client, upstreams[n], timeout) for n in names))
    services = dict(zip(names, results, strict=True))
    status = "ready" if all(s.status == "ready" for s in services.values()) else "degraded"
    return SystemHealth(status=status, services=services)
