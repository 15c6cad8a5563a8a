"""Backfills against the KIS simulator replaying the real KRX daily bars: exactly once, resumable."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from common.clock import KST
from common.db.collection import CollectionJob

# Friday 19 January 2018 after the close: every replayed symbol has its bar of the day.
AFTER_CLOSE = datetime(2018, 1, 19, 16, 0, tzinfo=KST)
START, END = date(2013, 1, 1), date(2017, 12, 29)  # five years


def symbols_of(shared_data: Path) -> list[str]:
    return sorted(p.stem for p in shared_data.glob("*.csv") if p.stem.isdigit() and len(p.stem) == 6)


def backfill(symbols: list[str], start: date = START, end: date = END) -> dict[str, Any]:
    return {"kind": "backfill", "symbols": symbols, "start": start.isoformat(), "end": end.isoformat()}


def finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("completed", "failed", "cancelled")


async def expect_exactly_once(h: Any, shared_data: Path, symbols: list[str], wait_until: Any, csv_rows: Any) -> None:
    expected = {s: csv_rows(shared_data, s, START, END) for s in symbols}
    total = sum(expected.values())
    assert total > len(symbols) * 1000  # about 245 trading days a year

    async def consumed() -> bool:
        return bool(await h.sink.rows() == total)

    await wait_until(consumed, timeout=60)
    for symbol, count in expected.items():
        assert await h.sink.rows(symbol) == count, symbol
    # Every bar reached the consumer in exactly one applied message: nothing needed deduplication
    # by key, and chunks published again after a resume were dropped by the inbox.
    assert h.sink.applied == h.sink.inserted == total


async def test_five_years_of_shared_data_land_in_the_database_exactly_once(
    pg_url: str, shared_data: Path, harness: Any, wait_until: Any, csv_rows: Any
) -> None:
    symbols = symbols_of(shared_data)
    async with harness(pg_url, shared_data, AFTER_CLOSE) as h, h.open_collector() as collector:
        response = await collector.http.post("/data/collect", json=backfill(symbols))
        assert response.status_code == 202, response.text
        job = await collector.wait_for(response.json()["id"], finished)

        assert job["status"] == "completed", job
        progress = job["progress"]
        assert progress["symbols_done"] == progress["symbols_total"] == len(symbols)
        assert progress["chunks_done"] == progress["chunks_total"] > 0
        assert progress["percent"] == 100.0
        await expect_exactly_once(h, shared_data, symbols, wait_until, csv_rows)
        assert progress["bars_published"] == h.sink.inserted


@pytest.mark.parametrize("stop", ["graceful", "crash"])
async def test_interrupted_backfill_resumes_from_its_checkpoint_and_still_lands_every_bar_once(
    stop: str, pg_url: str, shared_data: Path, harness: Any, wait_until: Any, csv_rows: Any
) -> None:
    symbols = symbols_of(shared_data)
    # A slower client, so that the job is surely mid-way when the service stops.
    async with harness(pg_url, shared_data, AFTER_CLOSE, kis={"rate_per_second": 25.0}) as h:
        async with h.open_collector() as first:
            response = await first.http.post("/data/collect", json=backfill(symbols))
            job_id = response.json()["id"]
            before = await first.wait_for(job_id, lambda j: j["progress"]["chunks_done"] >= 20)
        if stop == "crash":
            # A killed process records nothing: its job stays "running" in the database.
            async with h.runtime.sessionmaker.begin() as session:
                await session.execute(update(CollectionJob).where(CollectionJob.id == job_id).values(status="running"))
        else:
            async with h.open_collector(resume_on_start=False) as idle:
                assert (await idle.job(job_id))["status"] == "interrupted"

        async with h.open_collector() as second:
            job = await second.wait_for(job_id, finished)
            events = (await second.http.get(f"/data/collect/{job_id}/events")).json()["events"]

        assert job["status"] == "completed", job
        assert job["resumes"] == 1
        assert job["progress"]["chunks_done"] == job["progress"]["chunks_total"]
        assert job["progress"]["chunks_done"] > before["progress"]["chunks_done"]
        kinds = [e["kind"] for e in events]
        assert "interrupted" in kinds and "resumed" in kinds
        await expect_exactly_once(h, shared_data, symbols, wait_until, csv_rows)


async def test_cancelled_backfill_stops_at_a_chunk_boundary_and_the_same_request_may_run_again(
    sqlite_url: str, shared_data: Path, harness: Any
) -> None:
    symbols = symbols_of(shared_data)
    async with harness(sqlite_url, shared_data, AFTER_CLOSE, kis={"rate_per_second": 20.0}) as h:
        async with h.open_collector() as collector:
            job_id = (await collector.http.post("/data/collect", json=backfill(symbols))).json()["id"]
            await collector.wait_for(job_id, lambda j: j["progress"]["chunks_done"] >= 3)

            cancelled = await collector.http.post(f"/data/collect/{job_id}/cancel")
            assert cancelled.status_code == 202
            job = await collector.wait_for(job_id, finished)
            assert job["status"] == "cancelled"
            assert 3 <= job["progress"]["chunks_done"] < job["progress"]["chunks_total"]
            published = job["progress"]["bars_published"]
            assert (await collector.job(job_id))["progress"]["bars_published"] == published

            # Cancelling again is harmless; a cancelled job no longer answers for its request.
            assert (await collector.http.post(f"/data/collect/{job_id}/cancel")).status_code == 202
            again = await collector.http.post("/data/collect", json=backfill(symbols))
            assert again.status_code == 202
            assert again.json()["id"] != job_id
            await collector.http.post(f"/data/collect/{again.json()['id']}/cancel")
