"""The per-appkey token bucket on an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from common.clock import FixedClock
from common.kis import KisClient, KisSettings, MemoryTokenStore
from common.kis.ratelimit import TokenBucket, shared_bucket

START = datetime(2026, 7, 10, 1, 0, tzinfo=UTC)


async def test_bucket_allows_a_burst_then_spaces_calls_at_the_rate() -> None:
    clock = FixedClock(START)
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    for _ in range(2):
        await bucket.acquire()
    assert clock.now() == START
    for _ in range(4):
        await bucket.acquire()
    assert clock.now() - START == timedelta(seconds=2)


async def test_concurrent_callers_each_wait_for_their_own_slot() -> None:
    clock = FixedClock(START)
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits == [0.0, 1.0, 2.0, 3.0]
    await asyncio.gather(*(bucket.acquire() for _ in range(3)))


async def test_bucket_refills_with_time_up_to_its_burst() -> None:
    clock = FixedClock(START)
    bucket = TokenBucket(rate=18.0, burst=18, clock=clock)
    assert all(bucket.reserve() == 0.0 for _ in range(18))
    assert bucket.reserve() > 0
    clock.advance(timedelta(seconds=10))
    assert all(bucket.reserve() == 0.0 for _ in range(18))


async def test_penalize_pushes_the_next_permit_back() -> None:
    clock = FixedClock(START)
    bucket = TokenBucket(rate=10.0, burst=10, clock=clock)
    bucket.penalize(0.5)
    assert bucket.reserve() >= 0.5


def test_one_bucket_per_appkey_and_clock() -> None:
    clock, other = FixedClock(START), FixedClock(START)
    a = shared_bucket("key-a", "rest", 1.0, 1, clock)
    assert shared_bucket("key-a", "rest", 1.0, 1, clock) is a
    assert shared_bucket("key-b", "rest", 1.0, 1, clock) is not a
    assert shared_bucket("key-a", "rest", 1.0, 1, other) is not a


async def test_paper_default_is_one_call_a_second_shared_by_clients_of_one_appkey() -> None:
    clock = FixedClock(START)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/tokenP":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86400})
        return httpx.Response(200, json={"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "", "output": {"stck_prpr": "1"}})

    settings = KisSettings(
        domain="paper", paper_rest_url="http://kis.test", appkey=SecretStr("PSVTratelimit0123456789abcdefghijklm")
    )
    assert settings.effective_rate_per_second == 1.0
    assert KisSettings(domain="real").effective_rate_per_second == 18.0
    store = MemoryTokenStore()
    clients = [
        KisClient(settings, http=httpx.AsyncClient(transport=httpx.MockTransport(handler)), store=store, clock=clock)
        for _ in range(2)
    ]
    await clients[0].access_token()
    before = clock.now()
    for _ in range(2):
        for client in clients:
            await client.get_quote("005930")
    assert clock.now() - before >= timedelta(seconds=3)
    for client in clients:
        await client.aclose()
