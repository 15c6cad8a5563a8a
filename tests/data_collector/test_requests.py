"""Request validation, idempotent submission and job lookup of ``/data/collect``."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from common.clock import KST

AFTER_CLOSE = datetime(2018, 1, 19, 16, 0, tzinfo=KST)
DAILY = {"kind": "backfill", "symbols": ["005930"], "start": "2017-01-02", "end": "2017-03-31"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**DAILY, "kind": "everything"}, "body"),
        ({**DAILY, "symbols": []}, "symbols"),
        ({**DAILY, "symbols": ["5930"]}, "symbols"),
        ({**DAILY, "start": "2017-04-01"}, "body"),
        ({**DAILY, "start": "yesterday"}, "start"),
        ({**DAILY, "timeframes": ["5m"]}, "timeframes"),
        ({**DAILY, "unknown": 1}, "unknown"),
        ({"kind": "stream", "symbols": [f"{i:06d}" for i in range(21)], "channels": ["trades", "book"]}, "body"),
        ({"kind": "stream", "symbols": ["005930"], "channels": ["quotes"]}, "channels"),
        ({"kind": "stream", "symbols": ["005930"], "until": "2018-01-19T15:30:00"}, "until"),
    ],
)
async def test_invalid_collect_requests_are_422_naming_the_field(
    body: dict[str, Any], where: str, sqlite_url: str, shared_data: Path, harness: Any
) -> None:
    async with harness(sqlite_url, shared_data, AFTER_CLOSE) as h, h.open_collector() as collector:
        response = await collector.http.post("/data/collect", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == "invalid_input"
        assert any(where in map(str, d["loc"]) for d in response.json()["detail"]), response.json()


async def test_requests_the_service_must_refuse_after_parsing_are_422(
    sqlite_url: str, shared_data: Path, harness: Any
) -> None:
    async with harness(sqlite_url, shared_data, AFTER_CLOSE) as h, h.open_collector(max_backfill_years=2) as c:
        future = await c.http.post("/data/collect", json={**DAILY, "start": "2018-02-01", "end": "2018-03-01"})
        assert future.status_code == 422 and "future" in future.json()["message"]
        too_long = await c.http.post("/data/collect", json={**DAILY, "start": "2010-01-01"})
        assert too_long.status_code == 422 and "years" in too_long.json()["message"]
        past = {"kind": "stream", "symbols": ["005930"], "until": "2018-01-19T15:30:00+09:00"}
        assert (await c.http.post("/data/collect", json=past)).status_code == 422


async def test_the_same_request_twice_returns_the_same_job_and_runs_once(
    sqlite_url: str, shared_data: Path, harness: Any, wait_until: Any
) -> None:
    async with harness(sqlite_url, shared_data, AFTER_CLOSE) as h, h.open_collector() as collector:
        first = await collector.http.post("/data/collect", json=DAILY)
        # The same request spelled differently: symbols repeated, timeframes explicit.
        same = {**DAILY, "symbols": ["005930", "005930"], "timeframes": ["1d"]}
        second = await collector.http.post("/data/collect", json=same)
        assert first.status_code == 202 and second.status_code == 200
        assert first.json()["id"] == second.json()["id"]

        job_id = first.json()["id"]
        job = await collector.wait_for(job_id, lambda j: j["status"] == "completed")
        again = await collector.http.post("/data/collect", json=DAILY)
        assert again.status_code == 200 and again.json()["id"] == job_id

        listed = (await collector.http.get("/data/collect", params={"status": "completed"})).json()["jobs"]
        assert [j["id"] for j in listed] == [job_id]

        async def consumed() -> bool:
            return bool(await h.sink.rows() == job["progress"]["bars_published"] > 0)

        await wait_until(consumed)
        assert h.sink.applied == h.sink.inserted  # one run: nothing arrived twice


async def test_unknown_jobs_are_404_and_finished_ones_cannot_be_cancelled(
    sqlite_url: str, shared_data: Path, harness: Any
) -> None:
    async with harness(sqlite_url, shared_data, AFTER_CLOSE) as h, h.open_collector() as collector:
        missing = uuid.uuid4()
        assert (await collector.http.get(f"/data/collect/{missing}")).status_code == 404
        assert (await collector.http.get(f"/data/collect/{missing}/events")).status_code == 404
        assert (await collector.http.post(f"/data/collect/{missing}/cancel")).status_code == 404
        assert (await collector.http.get("/data/collect/not-a-uuid")).status_code == 422

        job_id = (await collector.http.post("/data/collect", json=DAILY)).json()["id"]
        await collector.wait_for(job_id, lambda j: j["status"] == "completed")
        refused = await collector.http.post(f"/data/collect/{job_id}/cancel")
        assert refused.status_code == 409 and refused.json()["detail"] == {"status": "completed"}


async def test_without_kis_credentials_a_job_is_refused_with_503(sqlite_url: str, harness: Any) -> None:
    async with harness(sqlite_url, None, AFTER_CLOSE, kis={"appkey": "", "appsecret": ""}) as h:
        async with h.open_collector() as collector:
            response = await collector.http.post("/data/collect", json=DAILY)
            assert response.status_code == 503
            assert "KIS_APPKEY" in response.json()["message"]
