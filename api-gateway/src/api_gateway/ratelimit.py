"""Token buckets per client, in memory (each gateway replica limits on its own)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from common.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    """``rate`` tokens per second up to ``burst``; one token per request.

    At most ``max_clients`` buckets are kept; the least recently used goes first (a bucket
    that has been idle long enough is full again, so forgetting it changes nothing).
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._monotonic = monotonic
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def try_take(self, client: str) -> float | None:
        """Take a token for ``client``: None if allowed, else the seconds until one is available."""
        now = self._monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(tokens=self.burst, updated=now)
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    def take(self, client: str) -> None:
        """Take a token or raise ``RateLimited`` (429 with ``Retry-After``)."""
        wait = self.try_take(client)
        if wait is not None:
            raise RateLimited("too many requests; slow down", retry_after=wait, detail={"retry_after_seconds": wait})
