"""Token-bucket rate limiting per appkey (kis-api.md §6.1), on the injected clock.

Each ``acquire`` reserves its slot synchronously (no await between reading and updating the
bucket), then sleeps until the slot is due, so concurrent callers are served in order without
a lock and the bucket works on any event loop.
"""

from __future__ import annotations

import weakref
from datetime import datetime

import structlog

from common.clock import Clock

log = structlog.get_logger(__name__)


class TokenBucket:
    """``rate`` permits per second with bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Clock, *, name: str = "kis") -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.name = name
        self._clock = clock
        self._tokens = float(burst)
        self._updated: datetime = clock.now()

    def _refill(self) -> None:
        now = self._clock.now()
        elapsed = (now - self._updated).total_seconds()
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._updated = now

    def reserve(self) -> float:
        """Take one permit now (possibly on credit) and return how long to wait before using it."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            log.debug("kis.rate_wait", limiter=self.name, wait_seconds=round(wait, 4))
            await self._clock.sleep(wait)

    def penalize(self, seconds: float) -> None:
        """Push every future permit back by ``seconds`` (the server said we went too fast)."""
        self._refill()
        self._tokens = min(self._tokens, 0.0) - seconds * self.rate


# One bucket per (clock, appkey key_id, purpose) for the whole process, so every client object of
# one appkey shares its limit. Keyed weakly by clock so test clocks do not share state.
_BUCKETS: weakref.WeakKeyDictionary[object, dict[tuple[str, str], TokenBucket]] = weakref.WeakKeyDictionary()


def shared_bucket(key_id: str, purpose: str, rate: float, burst: int, clock: Clock) -> TokenBucket:
    """The process-wide bucket of one appkey for ``purpose`` (``rest``, ``auth``)."""
    per_clock = _BUCKETS.setdefault(clock, {})
    bucket = per_clock.get((key_id, purpose))
    if bucket is None or bucket.rate != rate or bucket.burst != burst:
        bucket = TokenBucket(rate, burst, clock, name=f"{purpose}:{key_id[:12]}")
        per_clock[(key_id, purpose)] = bucket
    return bucket
