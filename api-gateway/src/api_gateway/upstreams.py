"""Where each service lives: one or more replicas, picked round-robin with passive health.

A replica that failed (connection refused, timeout) is skipped for ``cooldown`` seconds; no
probe traffic is sent. When every replica of a service is cooling down, the one whose
cooldown ends first is tried anyway: it may have come back, and a refused connection is
cheap.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass
class Replica:
    url: str
    down_until: float = 0.0
    failures: int = 0

    def available(self, now: float) -> bool:
        return self.down_until <= now


@dataclass
class ReplicaSet:
    service: str
    replicas: list[Replica]
    cooldown: float
    monotonic: Callable[[], float] = time.monotonic
    _turn: Iterator[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError(f"{self.service} has no replica")
        self._turn = itertools.cycle(range(len(self.replicas)))

    def order(self) -> list[Replica]:
        """Replicas to try, in order: the next healthy ones round-robin, then the cooling ones."""
        now = self.monotonic()
        start = next(self._turn)
        rotated = self.replicas[start:] + self.replicas[:start]
        healthy = [r for r in rotated if r.available(now)]
        cooling = sorted((r for r in rotated if not r.available(now)), key=lambda r: r.down_until)
        return healthy + cooling

    def mark_failed(self, replica: Replica, reason: str) -> None:
        replica.failures += 1
        replica.down_until = self.monotonic() + self.cooldown
        log.warning(
            "api_gateway.replica_down",
            service=self.service,
            replica=replica.url,
            reason=reason,
            cooldown_seconds=self.cooldown,
        )

    def mark_ok(self, replica: Replica) -> None:
        if replica.failures:
            log.info("api_gateway.replica_up", service=self.service, replica=replica.url)
        replica.failures = 0
        replica.down_until = 0.0


class Upstreams:
    """Every configured service's replica set."""

    def __init__(
        self,
        config: Mapping[str, str | list[str]],
        *,
        cooldown: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sets: dict[str, ReplicaSet] = {}
        for service, urls in config.items():
            listed = [urls] if isinstance(urls, str) else list(urls)
            replicas = [Replica(url=u.rstrip("/")) for u in listed]
            self.sets[service] = ReplicaSet(service, replicas, cooldown, monotonic)

    def get(self, service: str) -> ReplicaSet | None:
        return self.sets.get(service)

    def names(self) -> list[str]:
        return sorted(self.sets)

    def first_urls(self) -> dict[str, str]:
        return {name: s.replicas[0].url for name, s in self.sets.items()}
