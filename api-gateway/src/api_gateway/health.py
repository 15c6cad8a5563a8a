"""Aggregated health: the readiness of every replica of every upstream service, asked concurrently."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from pydantic import BaseModel

from api_gateway.upstreams import ReplicaSet, Upstreams


class ReplicaHealth(BaseModel):
    url: str
    status: str
    detail: str | None = None


class ServiceHealth(BaseModel):
    status: str
    checks: dict[str, str] = {}
    detail: str | None = None
    replicas: list[ReplicaHealth] = []


class SystemHealth(BaseModel):
    status: str
    services: dict[str, ServiceHealth]


async def probe(session: aiohttp.ClientSession, base_url: str, timeout: float) -> ServiceHealth:
    try:
        async with session.get(
            f"{base_url.rstrip('/')}/readyz", timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            status, content = response.status, await response.read()
    except TimeoutError:
        return ServiceHealth(status="unreachable", detail="timed out")
    except aiohttp.ClientError as exc:
        return ServiceHealth(status="unreachable", detail=type(exc).__name__)
    try:
        body: dict[str, Any] = json.loads(content)
    except ValueError:
        return ServiceHealth(status="unreachable", detail=f"HTTP {status} without a health body")
    if not isinstance(body, dict):
        return ServiceHealth(status="unreachable", detail=f"HTTP {status} without a health body")
    raw_checks = body.get("checks")
    checks: dict[str, Any] = raw_checks if isinstance(raw_checks, dict) else {}
    return ServiceHealth(status=str(body.get("status", "unknown")), checks={str(k): str(v) for k, v in checks.items()})


async def service_health(session: aiohttp.ClientSession, replicas: ReplicaSet, timeout: float) -> ServiceHealth:
    """Ready when at least one replica is; the first ready replica's checks, every replica's status."""
    results = await asyncio.gather(*(probe(session, r.url, timeout) for r in replicas.replicas))
    per_replica = [
        ReplicaHealth(url=r.url, status=h.status, detail=h.detail)
        for r, h in zip(replicas.replicas, results, strict=True)
    ]
    chosen = next((h for h in results if h.status == "ready"), results[0])
    return chosen.model_copy(update={"replicas": per_replica if len(per_replica) > 1 else []})


async def system_health(session: aiohttp.ClientSession, upstreams: Upstreams, timeout: float) -> SystemHealth:
    names = upstreams.names()
    sets = [upstreams.sets[n] for n in names]
    results = await asyncio.gather(*(service_health(session, s, timeout) for s in sets))
    services = dict(zip(names, results, strict=True))
    status = "ready" if all(s.status == "ready" for s in services.values()) else "degraded"
    return SystemHealth(status=status, services=services)
