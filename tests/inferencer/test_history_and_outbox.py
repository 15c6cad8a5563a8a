"""Decisions from stored data (restarts, replicas, backfills) and the outbox of trader calls."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from common.bus.memory import InMemoryBus
from common.clock import KST, FixedClock
from common.contracts import FeaturesV1, ModelPromotedV1
from common.db.models import FeatureRecord
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from inferencer.app import create_app
from inferencer.models import DecisionRecord
from inferencer.service import InferencerService
from inferencer.settings import InferencerSettings
from inferencer.trader import TraderClient

from .conftest import envelope, features, make_model

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=KST)
SYMBOL = "005930"


def bar(minute: int) -> FeaturesV1:
    """A bar whose values differ minute by minute (so windows are told apart)."""
    base = features(SYMBOL, T0 + timedelta(minutes=minute), close=6_490 + 10 * minute)
    return base.model_copy(update={"values": {"ret_1": 0.001 * minute, "rsi_14": 50.0 + minute, "vol_ratio": None}})


async def store_features(runtime: Runtime, bars: list[FeaturesV1]) -> None:
    """What the data-processor does before it publishes: the features table holds every bar."""
    async with runtime.sessionmaker.begin() as session:
        for b in bars:
            session.add(
                FeatureRecord(
                    symbol=b.symbol, timeframe=b.timeframe, ts=b.ts, feature_set=b.feature_set, values=b.values
                )
            )


class Replica:
    """An inferencer app on a shared database (and, optionally, a shared bus)."""

    def __init__(self, app: FastAPI, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    @property
    def service(self) -> InferencerService:
        service: InferencerService = self.app.state.inferencer
        return service


class StartReplica(Protocol):
    async def __call__(
        self,
        database_url: str,
        *,
        trader: httpx.AsyncClient | None = None,
        bus: InMemoryBus | None = None,
        **options: Any,
    ) -> Replica: ...


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[StartReplica]:
    """Starts inferencer replicas: ``await start(database_url, trader=..., **settings)``, all serving one model."""
    model = make_model(tmp_path, "v1", favoured=2, window=3)
    async with AsyncExitStack() as stack:

        async def start(
            database_url: str,
            *,
            trader: httpx.AsyncClient | None = None,
            bus: InMemoryBus | None = None,
            **options: Any,
        ) -> Replica:
            options.setdefault("trade", trader is not None)
            options.setdefault("outbox_poll_seconds", 0.05)
            settings = InferencerSettings(model_uri=model, **options)  # type: ignore[arg-type]
            runtime_settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=database_url)  # type: ignore[arg-type]
            runtime = await stack.enter_async_context(Runtime.from_settings(runtime_settings))
            if bus is not None:
                runtime.bus = bus
            app = create_app(runtime, settings=settings, trader=trader)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return Replica(app, runtime)

        yield start


async def decisions(runtime: Runtime) -> list[DecisionRecord]:
    async with runtime.sessionmaker() as session:
        query = select(DecisionRecord).order_by(DecisionRecord.feature_ts)
        return list((await session.execute(query)).scalars())


def signature(records: list[DecisionRecord]) -> list[tuple[str, float, bytes | None]]:
    return [(r.feature_ts.isoformat(), r.value, r.state) for r in records]


async def test_a_restarted_inferencer_continues_from_the_database_as_if_it_never_stopped(
    replicas: StartReplica, database_url: str
) -> None:
    bars = [bar(minute) for minute in range(8)]
    first = await replicas(database_url)
    await store_features(first.runtime, bars)
    for b in bars[:5]:
        await first.service.on_features(b)
    restarted = await replicas(database_url)  # nothing in its memory
    made = [await restarted.service.on_features(b) for b in bars[5:]]
    assert all(m is not None and m.steps == 1 for m in made)  # continued the stored state
    stored = await decisions(first.runtime)
    # window 3: 09:02 is the first decision; the tiny policy's value counts forward passes since zero state
    assert [r.value for r in stored] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert len({r.id for r in stored}) == 6


async def test_a_newest_first_backfill_decides_the_newest_bar_from_stored_history_only(
    replicas: StartReplica, database_url: str
) -> None:
    bars = [bar(minute) for minute in range(6)]
    replica = await replicas(database_url)
    await store_features(replica.runtime, bars)
    newest = await replica.service.on_features(bars[-1])
    assert newest is not None and newest.steps == 4  # rebuilt over 09:02..09:05, the bars with a full window
    assert newest.prediction.value == 3.0
    for b in reversed(bars[:-1]):
        assert await replica.service.on_features(b) is None  # older than the newest decision: late, skipped
    assert [r.feature_ts for r in await decisions(replica.runtime)] == [bars[-1].ts]


@pytest.mark.integration
async def test_two_replicas_sharing_the_bars_decide_exactly_as_one_would(replicas: StartReplica, pg_url: str) -> None:
    bars = [bar(minute) for minute in range(12)]
    one, two = await replicas(pg_url), await replicas(pg_url)
    await store_features(one.runtime, bars)

    # Like two consumers of one queue: alternate bars, the next one arriving while the last is in flight.
    async def deliver(index: int, b: FeaturesV1) -> None:
        await asyncio.sleep(0.002 * index)
        await (one if index % 2 else two).service.on_features(b)

    await asyncio.gather(*(deliver(i, b) for i, b in enumerate(bars)))
    stored = await decisions(one.runtime)
    decided = [r.feature_ts for r in stored]
    assert decided == sorted(set(decided)) and decided[-1] == bars[-1].ts  # no bar decided twice
    # Each decision carries exactly the state of all bars before it since the first decision.
    first_step = 2  # window 3
    for record in stored:
        minute = int((record.feature_ts - T0).total_seconds() // 60)
        assert record.value == minute - first_step, record.feature_ts


@pytest.fixture
def trader_calls() -> list[dict[str, object]]:
    return []


def fake_trader(calls: list[dict[str, object]], answers: list[int]) -> httpx.AsyncClient:
    """A trader replica behind the port: answers the given statuses in turn (the last one repeats)."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        status = answers[min(len(calls), len(answers)) - 1]
        if status != 200:
            return httpx.Response(status, json={"error": "unavailable", "message": "try later"})
        order = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, body["decision_id"])), "status": "SUBMITTED"}
        return httpx.Response(200, json={"order": order})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://trader")


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():  # type: ignore[misc]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_decision_the_trader_could_not_take_is_retried_with_the_same_key_until_it_is(
    replicas: StartReplica, database_url: str, trader_calls: list[dict[str, object]]
) -> None:
    replica = await replicas(database_url, trader=fake_trader(trader_calls, [503, 500, 200]))
    for minute in range(3):
        await replica.service.on_features(bar(minute))

    async def taken() -> bool:
        return [r.trade_status for r in await decisions(replica.runtime)] == ["SUBMITTED"]

    await eventually(taken)
    [record] = await decisions(replica.runtime)
    assert [c["decision_id"] for c in trader_calls] == [str(record.id)] * 3
    assert record.attempts == 3 and record.error is None and record.order_id is not None


async def test_a_final_refusal_is_not_retried_and_an_old_pending_decision_is_superseded(
    replicas: StartReplica, database_url: str, trader_calls: list[dict[str, object]]
) -> None:
    # No background retry in this test: the 09:02 decision waits until 09:03 supersedes it.
    replica = await replicas(database_url, trader=fake_trader(trader_calls, [503, 422]), outbox_poll_seconds=60)
    for minute in range(3):
        await replica.service.on_features(bar(minute))
    # 09:02 failed (503) and waits; 09:03 comes before its retry and is refused for good (422).
    await replica.service.on_features(bar(3))
    await replica.service.drain_outbox_once()
    statuses = {r.feature_ts: r.trade_status for r in await decisions(replica.runtime)}
    assert statuses == {bar(2).ts: "superseded", bar(3).ts: "rejected"}
    assert len(trader_calls) == 2  # the superseded target was never sent again


async def test_an_unsent_decision_expires_instead_of_trading_late(
    replicas: StartReplica, database_url: str, trader_calls: list[dict[str, object]]
) -> None:
    clock = FixedClock(datetime(2024, 3, 4, 0, 0, tzinfo=KST))
    replica = await replicas(database_url, trader=fake_trader(trader_calls, [503]), send_max_age_seconds=60)
    replica.service.clock = clock
    for minute in range(3):
        await replica.service.on_features(bar(minute))
    clock.advance(timedelta(minutes=2))
    await replica.service.drain_outbox_once()
    [record] = await decisions(replica.runtime)
    assert record.trade_status == "expired" and len(trader_calls) == 1


async def test_the_next_trader_replica_takes_the_call_when_one_is_down_or_passive() -> None:
    calls: list[dict[str, object]] = []
    down = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=1)  # nothing listens on the discard port
    passive = fake_trader([], [503])
    active = fake_trader(calls, [200])
    client = TraderClient([down, passive, active])
    response = await client.execute({"decision_id": "d1"})
    assert response.status_code == 200 and [c["decision_id"] for c in calls] == ["d1"]
    assert (await client.execute({"decision_id": "d2"})).status_code == 200  # the active one is asked first now
    assert [c["decision_id"] for c in calls] == ["d1", "d2"]
    await client.aclose()


async def test_every_replica_hears_every_promotion(replicas: StartReplica, sqlite_url: str, tmp_path: Path) -> None:
    bus = InMemoryBus()
    await bus.start()
    one, two = await replicas(sqlite_url, bus=bus), await replicas(sqlite_url, bus=bus)
    v2 = make_model(tmp_path / "next", "v2", favoured=3)
    promoted = ModelPromotedV1(model_id=uuid.uuid4(), version="v2", artifact_uri=v2, promoted_at=T0)
    await bus.publish("model.promoted", envelope(promoted))

    async def both_swapped() -> bool:
        return all(r.service.engine.model is not None and r.service.engine.model.version == "v2" for r in (one, two))

    await eventually(both_swapped)
    await bus.close()
