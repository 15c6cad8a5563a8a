"""Every configured feature set per closed bar: no look-ahead, the trainer's numbers for
``mt-ohlcv-v1``, and quote fundamentals in ``ta.v1`` only from quotes known at the bar's close."""

from __future__ import annotations

import asyncio
import csv
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from common.clock import kst_datetime
from common.contracts import Envelope, FeaturesV1, MarketQuoteV1
from common.db import FeatureRecord
from common.db.processing import Fundamentals
from data_processor.features import FEATURE_SETS, WINDOW, Series, compute_range, features_at
from data_processor.settings import DataProcessorSettings
from model_trainer.features import FEATURE_SET as TRAINER_FEATURE_SET
from model_trainer.features import compute_features

TA_ROWS = select(FeatureRecord.ts, FeatureRecord.values).where(FeatureRecord.feature_set == "ta.v1")
CUTS = (1, 20, 61, 62, 249, 250, 251, 317, 400)


def series_of(bars: list[Any]) -> Series:
    return Series.of([(b.open, b.high, b.low, b.close, b.volume, b.value) for b in bars])


def truncated(s: Series, cut: int) -> Series:
    return Series(s.open[:cut], s.high[:cut], s.low[:cut], s.close[:cut], s.volume[:cut], s.value[:cut])


def real_series(shared_data: Path, symbol: str) -> Series:
    with (shared_data / f"{symbol}.csv").open(newline="") as handle:
        rows = [
            tuple(int(float(row[k])) for k in ("open", "high", "low", "close", "volume"))
            for row in csv.DictReader(handle)
        ]
    return Series.of([(*r, None) for r in rows if min(r[:4]) > 0])


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_rows_recomputed_on_history_truncated_at_a_cut_equal_the_full_history_rows(
    name: str, dp: SimpleNamespace, shared_data: Path
) -> None:
    compute = FEATURE_SETS[name].compute_range
    for s in (series_of(dp.synthetic_daily(420)), real_series(shared_data, "005930")):
        full = compute(s, 0)
        for cut in (*CUTS, len(s) - 1):
            # Everything after the cut is gone: row t may only have used bars up to t's close.
            assert compute(truncated(s, cut), 0) == full[:cut], (name, cut)
            # The incremental path (a few new bars on top of stored history) gives the same rows.
            first = max(0, cut - 7)
            assert compute(truncated(s, cut), first) == full[first:cut], (name, cut)


@pytest.mark.parametrize("scale", [1, 500])  # 500: prices above 2e7 KRW take the per-window path
def test_batch_ta_rows_are_bit_identical_to_one_talib_pass_per_window(dp: SimpleNamespace, scale: int) -> None:
    s = series_of(dp.synthetic_daily(WINDOW + 60, seed=5, scale=scale))
    assert compute_range(s, 0) == [features_at(s, end) for end in range(len(s))]


def test_feature_sets_are_configurable_and_unknown_ones_refused() -> None:
    assert DataProcessorSettings().feature_sets == ["ta.v1", "mt-ohlcv-v1"]
    assert DataProcessorSettings(feature_sets=["mt-ohlcv-v1"]).feature_sets == ["mt-ohlcv-v1"]
    with pytest.raises(ValidationError, match="unknown feature sets"):
        DataProcessorSettings(feature_sets=["ta.v2"])


async def delivered(env: Any, count: int) -> None:
    """Wait until the in-process bus has handed the test's queue ``count`` feature messages."""
    for _ in range(200):
        if len(env.published) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(env.published)} feature messages delivered, expected {count}")


def published(env: Any, feature_set: str) -> dict[datetime, FeaturesV1]:
    """The last message per bar of one feature set."""
    out: dict[datetime, FeaturesV1] = {}
    for envelope in env.published:
        payload = envelope.payload
        if isinstance(payload, FeaturesV1) and payload.feature_set == feature_set:
            out[payload.ts] = payload
    return out


async def test_published_mt_ohlcv_features_equal_what_the_trainer_computes_from_the_same_bars(
    env: Any, dp: SimpleNamespace
) -> None:
    bars = dp.synthetic_daily(150)
    for start in range(0, len(bars), 7):  # as they close, a few at a time
        await env.bars(dp.bar_envelope(bars[start : start + 7]))
    await delivered(env, 2 * len(bars))

    live = published(env, TRAINER_FEATURE_SET)
    trainer = {row.ts: row.values for row in compute_features(bars)}

    assert len(live) == len(bars) and len(trainer) == len(bars) - 60
    assert {ts: live[ts].values for ts in trainer} == trainer  # exactly, every feature of every bar
    warming_up = [live[b.ts].values for b in bars[:60]]
    assert all(value is None for row in warming_up for value in row.values())


def quote(ts: datetime, per: str, market_cap: int) -> Envelope:
    payload = MarketQuoteV1(
        symbol="005930",
        ts=ts,
        price=70_000,
        per=Decimal(per),
        pbr=Decimal("1.1"),
        eps=None,
        market_cap=market_cap,
        foreign_ownership_pct=Decimal("51.25"),
        listed_shares=5_969_782_550,
    )
    return Envelope(producer="test", payload=payload)


async def test_ta_rows_carry_the_fundamentals_of_the_latest_quote_known_at_the_bars_close(
    env: Any, dp: SimpleNamespace
) -> None:
    days = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]
    during_second = quote(kst_datetime(days[1], time(12, 0)), "12.5", 400_000_000_000_000)
    after_third_close = quote(kst_datetime(days[2], time(15, 31)), "13.0", 410_000_000_000_000)
    await env.quotes(during_second)
    await env.quotes(during_second)  # redelivered: stored once
    await env.quotes(after_third_close)

    await env.bars(dp.bar_envelope([dp.daily(d, 70_000, 71_000, 69_000, 70_500) for d in days]))
    await delivered(env, 2 * len(days))

    rows = {ts: f.values for ts, f in published(env, "ta.v1").items()}
    first, second, third, fourth = (rows[dp.at(9, 0, day=d)] for d in days)
    assert "fund_per" not in first  # no quote was known at its close
    assert (second["fund_per"], second["fund_market_cap"], second["fund_eps"]) == (12.5, 4e14, None)
    assert third["fund_per"] == 12.5  # the 15:31 quote came after the 15:30 close
    assert (fourth["fund_per"], fourth["fund_foreign_ownership_pct"]) == (13.0, 51.25)
    assert not any(k.startswith("fund_") for f in published(env, "mt-ohlcv-v1").values() for k in f.values)
    assert await env.count(Fundamentals) == 2

    # A recomputation finds the same fundamentals for the same bars.
    async with env.session() as session:
        before = dict((await session.execute(TA_ROWS)).all())
    job = await env.client.post("/data/process", json={"symbols": ["005930"], "timeframe": "1d"})
    await env.app.state.jobs.wait()
    assert (await env.client.get(f"/data/process/{job.json()['id']}")).json()["status"] == "succeeded"
    async with env.session() as session:
        after = dict((await session.execute(TA_ROWS)).all())
    assert after == before
    page = (await env.client.get("/features", params={"symbol": "005930", "feature_set": "mt-ohlcv-v1"})).json()
    assert page["feature_set"] == "mt-ohlcv-v1" and len(page["rows"]) == 4

