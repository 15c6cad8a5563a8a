"""Faults on demand: rate-limit storms, forced token expiry, HTTP 5xx, dropped sockets, latency.

A ``FaultSpec`` is what an operator asks for (``POST /admin/faults`` or the ``KIS_SIM_FAULTS__*``
settings); ``FaultState`` is what is still pending. Durations are wall-clock seconds, like the
gateway limits they imitate; counters are decremented by each REST call they hit.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field

from common.clock import Clock


class FaultSpec(BaseModel):
    """Faults to inject; zero/false fields leave the current state of that fault alone."""

    rate_limit_calls: int = Field(default=0, ge=0, description="the next N /uapi calls get HTTP 500 EGW00201")
    rate_limit_seconds: float = Field(default=0, ge=0, description="every /uapi call gets EGW00201 for this long")
    expire_tokens: bool = Field(default=False, description="every issued access token expires now (EGW00123)")
    http_error_calls: int = Field(default=0, ge=0, description="the next N REST calls get a bare HTTP 5xx")
    http_error_status: int = Field(default=500, ge=500, le=599)
    drop_websockets: bool = Field(default=False, description="abort every WebSocket session now")
    latency_ms: int = Field(default=0, ge=0, le=60_000, description="added before every REST answer")
    latency_seconds: float = Field(default=0, ge=0, description="how long the latency lasts; 0 = until cleared")


class FaultState:
    """Pending faults, consumed by the REST gateway; thread-safe because tests poke it directly."""

    def __init__(self, wall: Clock) -> None:
        self._wall = wall
        self._lock = threading.Lock()
        self._rate_limit_calls = 0
        self._rate_limit_until: datetime | None = None
        self._http_error_calls = 0
        self._http_error_status = 500
        self._latency = 0.0
        self._latency_until: datetime | None = None

    def apply(self, spec: FaultSpec) -> None:
        """Arm the counting and timed faults of ``spec`` (the one-shot actions are the server's)."""
        now = self._wall.now()
        with self._lock:
            if spec.rate_limit_calls:
                self._rate_limit_calls = spec.rate_limit_calls
            if spec.rate_limit_seconds:
                self._rate_limit_until = now + timedelta(seconds=spec.rate_limit_seconds)
            if spec.http_error_calls:
                self._http_error_calls = spec.http_error_calls
                self._http_error_status = spec.http_error_status
            if spec.latency_ms:
                self._latency = spec.latency_ms / 1000
                self._latency_until = now + timedelta(seconds=spec.latency_seconds) if spec.latency_seconds else None

    def clear(self) -> None:
        with self._lock:
            self._rate_limit_calls = 0
            self._rate_limit_until = None
            self._http_error_calls = 0
            self._latency = 0.0
            self._latency_until = None

    def take_http_error(self) -> int | None:
        """The status to fail this call with, consuming one armed 5xx, or None."""
        with self._lock:
            if self._http_error_calls <= 0:
                return None
            self._http_error_calls -= 1
            return self._http_error_status

    def take_rate_limit(self) -> bool:
        """Whether this call falls into a rate-limit storm (consuming one counted call)."""
        now = self._wall.now()
        with self._lock:
            if self._rate_limit_until is not None:
                if now < self._rate_limit_until:
                    return True
                self._rate_limit_until = None
            if self._rate_limit_calls > 0:
                self._rate_limit_calls -= 1
                return True
            return False

    def latency(self) -> float:
        """Seconds to wait before answering this call."""
        now = self._wall.now()
        with self._lock:
            if self._latency_until is not None and now >= self._latency_until:
                self._latency = 0.0
                self._latency_until = None
            return self._latency

    def describe(self) -> dict[str, Any]:
        now = self._wall.now()
        with self._lock:
            storm_left = (self._rate_limit_until - now).total_seconds() if self._rate_limit_until else 0.0
            latency_left = (self._latency_until - now).total_seconds() if self._latency_until else None
            return {
                "rate_limit_calls": self._rate_limit_calls,
                "rate_limit_seconds_left": max(0.0, storm_left),
                "http_error_calls": self._http_error_calls,
                "http_error_status": self._http_error_status,
                "latency_ms": round(self._latency * 1000),
                "latency_seconds_left": None if latency_left is None else max(0.0, latency_left),
            }
