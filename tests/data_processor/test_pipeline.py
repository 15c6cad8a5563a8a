"""Ticks and bars through the processor's handlers, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import talib
from sqlalchemy import select

from common.db import BarRecord, FeatureRecord, TickRecord
from common.db.processing import BarFlag, QuarantinedRecord
from data_processor import validation as v


async def bars_of(env: Any, timeframe: str) -> list[BarRecord]:
    async with env.session() as session:
        statement = select(BarRecord).where(BarRecord.timeframe == timeframe).order_by(BarRecord.ts)
        return list((await session.execute(statement)).scalars())


async def flags_of(env: Any) -> set[tuple[str, str]]:
    async with env.session() as session:
        rows = (await session.execute(select(BarFlag))).scalars()
        return {(f.timeframe, f.flag) for f in rows}


async def test_ticks_become_minute_bars_with_vwap_and_a_daily_bar(env: Any, dp: SimpleNamespace) -> None:
    ticks = [
        dp.tick(dp.at(9, 0, 5), 70_000, 10),
        dp.tick(dp.at(9, 0, 30), 70_500, 30),
        dp.tick(dp.at(9, 0, 50), 69_900, 10),
        dp.tick(dp.at(9, 1, 10), 70_100, 50),
    ]

    await env.ticks(dp.tick_envelope(ticks))

    first, second = await bars_of(env, "1m")
    assert (first.open, first.high, first.low, first.close, first.volume) == (70_000, 70_500, 69_900, 69_900, 50)
    assert first.value == 70_000 * 10 + 70_500 * 30 + 69_900 * 10
    assert (second.open, second.close, second.volume) == (70_100, 70_100, 50)
    (day,) = await bars_of(env, "1d")
    assert (day.ts, day.open, day.high, day.low, day.close, day.volume) == (
        dp.at(9, 0),
        70_000,
        70_500,
        69_900,
        70_100,
        100,
    )
    # The first minute closed when 09:01 printed: its features were published, with the VWAP,
    # once per configured feature set.
    published = [e.payload for e in env.published]
    assert [(f.timeframe, f.ts, f.feature_set) for f in published] == [
        ("1m", dp.at(9, 0), "ta.v1"),
        ("1m", dp.at(9, 0), "mt-ohlcv-v1"),
    ]
    assert published[0].values["vwap"] == first.value / 50
    assert published[1].values["log_ret_1"] is None  # mt-ohlcv-v1 needs 61 bars


async def test_redelivered_and_overlapping_batches_store_each_tick_once(env: Any, dp: SimpleNamespace) -> None:
    ticks = [dp.tick(dp.at(9, 0, s), 70_000 + s, 1, seq=0) for s in range(0, 50)]
    envelope = dp.tick_envelope(ticks[:30])

    await env.ticks(envelope)
    await env.ticks(envelope)  # redelivery: the inbox skips it
    await env.ticks(dp.tick_envelope(ticks[20:]))  # a new message overlapping the first

    assert await env.count(TickRecord) == 50
    (bar,) = await bars_of(env, "1m")
    assert bar.volume == 50 and bar.close == 70_049


async def test_late_tick_amends_closed_bar_flags_it_and_republishes_features(env: Any, dp: SimpleNamespace) -> None:
    await env.ticks(dp.tick_envelope([dp.tick(dp.at(9, 0, 10), 70_000), dp.tick(dp.at(9, 2, 0), 70_200)]))
    await env.ticks(dp.tick_envelope([dp.tick(dp.at(9, 0, 59), 71_000, 90)]))  # late, out of order

    first = (await bars_of(env, "1m"))[0]
    assert (first.high, first.close, first.volume) == (71_000, 71_000, 100)
    assert ("1m", v.FLAG_AMENDED) in await flags_of(env)
    versions = [
        e.payload.values["vwap"]
        for e in env.published
        if e.payload.ts == dp.at(9, 0) and e.payload.feature_set == "ta.v1"
    ]
    assert versions == [70_000.0, (70_000 * 10 + 71_000 * 90) / 100]


async def test_bad_ticks_are_quarantined_with_reasons_and_never_stored(env: Any, dp: SimpleNamespace) -> None:
    await env.bars(dp.bar_envelope([dp.daily(date(2023, 12, 28), 70_000, 70_000, 70_000, 70_000)]))
    message_id = uuid.uuid4()
    batch = [
        dp.tick(dp.at(9, 0, 1), 70_000),
        dp.tick(dp.at(8, 0), 70_000, seq=1),
        dp.tick(dp.at(9, 0, 2), 95_000, seq=2),
        dp.tick(dp.at(9, 0, 3), 70_000, volume=0, seq=3),
    ]

    await env.ticks(dp.tick_envelope(batch, message_id))
    await env.ticks(dp.tick_envelope(batch, message_id))

    async with env.session() as session:
        rows = (await session.execute(select(QuarantinedRecord).order_by(QuarantinedRecord.position))).scalars().all()
    assert [(r.position, r.reason) for r in rows] == [
        (1, v.OUTSIDE_SESSION),
        (2, v.OUTSIDE_PRICE_LIMITS),
        (3, v.NON_POSITIVE_VOLUME),
    ]
    assert rows[1].record["price"] == 95_000 and rows[1].message_id == message_id
    assert await env.count(TickRecord) == 1


async def test_daily_bars_store_once_flag_halts_gaps_and_quarantine_bad_rows(env: Any, dp: SimpleNamespace) -> None:
    days = [date(2024, 1, 2) + timedelta(days=i) for i in (0, 1, 2, 30)]
    bars = [
        dp.daily(days[0], 100, 110, 95, 105),
        dp.daily(days[1], 105, 105, 105, 105, v=0),  # halted
        dp.daily(days[2], 105, 104, 100, 101),  # open above high: bad
        dp.daily(days[3], 101, 108, 100, 107),  # a month later: gap
    ]
    envelope = dp.bar_envelope(bars)

    await env.bars(envelope)
    await env.bars(dp.bar_envelope(bars))  # the same bars again in another message

    assert [b.ts for b in await bars_of(env, "1d")] == [dp.at(9, 0, day=d) for d in (days[0], days[1], days[3])]
    assert await flags_of(env) == {("1d", v.FLAG_HALT), ("1d", v.FLAG_GAP)}
    async with env.session() as session:
        reasons = (await session.execute(select(QuarantinedRecord.reason))).scalars().all()
    assert sorted(reasons) == [v.OHLC_INCONSISTENT, v.OHLC_INCONSISTENT]  # once per message, with its reason
    assert await env.count(FeatureRecord, FeatureRecord.feature_set == "ta.v1") == 3
    assert await env.count(FeatureRecord) == 6  # and as many mt-ohlcv-v1 rows


async def test_filling_a_hole_clears_its_gap_flag(env: Any, dp: SimpleNamespace) -> None:
    first, late, last = date(2024, 1, 2), date(2024, 1, 10), date(2024, 1, 19)
    await env.bars(dp.bar_envelope([dp.daily(first, 100, 100, 100, 100), dp.daily(last, 100, 100, 100, 100)]))
    assert await flags_of(env) == {("1d", v.FLAG_GAP)}

    await env.bars(dp.bar_envelope([dp.daily(late, 100, 100, 100, 100)]))

    assert await flags_of(env) == set()


async def test_incremental_features_equal_batch_recomputation_bit_for_bit(env: Any, dp: SimpleNamespace) -> None:
    bars = dp.synthetic_daily(320)
    for start in range(0, len(bars), 7):  # bars arrive a few at a time, as they close
        await env.bars(dp.bar_envelope(bars[start : start + 7]))
    async with env.session() as session:
        incremental = {
            (ts, name): values
            for ts, name, values in await session.execute(
                select(FeatureRecord.ts, FeatureRecord.feature_set, FeatureRecord.values)
            )
        }

    response = await env.client.post("/data/process", json={"symbols": [dp.SYMBOL], "timeframe": "1d"})
    assert response.status_code == 202
    await env.app.state.jobs.wait()
    job = (await env.client.get(f"/data/process/{response.json()['id']}")).json()
    async with env.session() as session:
        batch = {
            (ts, name): values
            for ts, name, values in await session.execute(
                select(FeatureRecord.ts, FeatureRecord.feature_set, FeatureRecord.values)
            )
        }

    assert job["status"] == "succeeded" and job["done"] == job["total"] == 320 and job["progress"] == 1.0
    assert len(incremental) == 2 * 320  # ta.v1 and mt-ohlcv-v1
    assert batch == incremental  # JSON floats round-trip exactly: equal means bit-identical


async def test_rsi_and_ma_endpoints_equal_talib_on_the_same_closes(env: Any, dp: SimpleNamespace) -> None:
    bars = dp.synthetic_daily(120)
    await env.bars(dp.bar_envelope(bars))
    start, end = bars[10].ts, bars[99].ts
    closes = np.array([b.close for b in bars[10:100]], dtype=np.float64)

    rsi = (
        await env.client.get(
            "/indicator/rsi",
            params={"symbol": dp.SYMBOL, "window": 14, "start": start.isoformat(), "end": end.isoformat()},
        )
    ).json()
    ema = (
        await env.client.get(
            "/indicator/ma",
            params={
                "symbol": dp.SYMBOL,
                "window": 10,
                "kind": "ema",
                "start": start.isoformat(),
                "end": end.isoformat(),
            },
        )
    ).json()

    expected_rsi = talib.RSI(closes, timeperiod=14)
    expected_ema = talib.EMA(closes, timeperiod=10)
    assert [p["close"] for p in rsi["points"]] == closes.astype(int).tolist()
    assert [p["value"] for p in rsi["points"]][14:] == expected_rsi[14:].tolist()
    assert all(p["value"] is None for p in rsi["points"][:14])
    assert [p["value"] for p in ema["points"]][9:] == expected_ema[9:].tolist()


async def test_bad_indicator_parameters_get_clear_422s(env: Any, dp: SimpleNamespace) -> None:
    await env.bars(dp.bar_envelope(dp.synthetic_daily(5)))
    cases = [
        ("/indicator/rsi", {"symbol": "SAMSUNG", "window": 14}),
        ("/indicator/rsi", {"symbol": dp.SYMBOL, "window": 1}),
        ("/indicator/rsi", {"symbol": dp.SYMBOL, "window": "ten"}),
        ("/indicator/ma", {"symbol": dp.SYMBOL, "kind": "wma"}),
        ("/indicator/ma", {"symbol": dp.SYMBOL, "timeframe": "5m"}),
        (
            "/indicator/ma",
            {"symbol": dp.SYMBOL, "start": "2024-02-01T00:00:00+00:00", "end": "2024-01-01T00:00:00+00:00"},
        ),
        ("/indicator/ma", {"symbol": dp.SYMBOL, "start": "2024-01-01T00:00:00"}),
        ("/features", {"symbol": dp.SYMBOL, "limit": 0}),
        ("/features", {"symbol": dp.SYMBOL, "format": "xml"}),
    ]
    for path, params in cases:
        response = await env.client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["message"], (path, params)
    missing = await env.client.get("/indicator/rsi", params={"symbol": "000660"})
    assert missing.status_code == 404
    bad_job = await env.client.post("/data/process", json={"symbols": [], "timeframe": "1d"})
    assert bad_job.status_code == 422


async def test_features_are_paged_as_json_and_csv(env: Any, dp: SimpleNamespace) -> None:
    await env.bars(dp.bar_envelope(dp.synthetic_daily(25)))

    first = (await env.client.get("/features", params={"symbol": dp.SYMBOL, "limit": 10})).json()
    second = (
        await env.client.get("/features", params={"symbol": dp.SYMBOL, "limit": 10, "cursor": first["next_cursor"]})
    ).json()
    csv_page = await env.client.get("/features", params={"symbol": dp.SYMBOL, "limit": 30, "format": "csv"})

    assert len(first["rows"]) == 10 and len(second["rows"]) == 10
    assert first["rows"][-1]["ts"] < second["rows"][0]["ts"]
    lines = csv_page.text.strip().splitlines()
    assert csv_page.headers["content-type"].startswith("text/csv")
    assert lines[0].startswith("ts,sma_5,") and len(lines) == 26


async def test_consumers_started_by_the_app_process_bus_messages(sqlite_url: str, dp: SimpleNamespace) -> None:
    import asyncio

    from common.db import migrate
    from common.runtime import Runtime
    from common.settings import Mode, RuntimeSettings
    from data_processor.app import create_app

    await migrate(sqlite_url)
    runtime = Runtime.from_settings(RuntimeSettings(mode=Mode.ALLINONE, database_url=sqlite_url))  # type: ignore[arg-type]
    async with runtime:
        app = create_app(runtime)
        async with app.router.lifespan_context(app):
            await runtime.bus.publish("bar.1d.005930", dp.bar_envelope(dp.synthetic_daily(30)))
            await runtime.bus.publish(
                "tick.000660", dp.tick_envelope([dp.tick(dp.at(9, 0, 1), 70_000, symbol="000660")])
            )
            for _ in range(200):
                async with runtime.sessionmaker() as session:
                    stored = len((await session.execute(select(BarRecord.ts))).all())
                if stored == 32:  # 30 daily bars + one minute bar + its daily bar
                    break
                await asyncio.sleep(0.05)
            assert stored == 32


async def test_the_watermark_lookup_from_a_start_finds_what_the_full_lookup_finds(
    env: Any, dp: SimpleNamespace
) -> None:
    from data_processor import repository

    days = [dp.DAY - timedelta(days=28), dp.DAY - timedelta(days=7), dp.DAY, dp.DAY + timedelta(days=400)]  # weekdays
    await env.ticks(dp.tick_envelope([dp.tick(dp.at(10, 0, day=day), 70_000, symbol="005930") for day in days[:2]]))
    await env.ticks(dp.tick_envelope([dp.tick(dp.at(10, 0, day=days[0]), 70_000, symbol="000660")]))
    await env.ticks(dp.tick_envelope([dp.tick(dp.at(11, 0, day=days[3]), 70_000, symbol="035420")]))
    symbols = ["005930", "000660", "035420", "051910"]  # the last has no ticks at all

    async with env.session() as session:
        everything = await repository.latest_tick_ts(session, symbols)
        for day in days:
            for since in (dp.at(9, 0, day=day), dp.at(9, 0, day=day) - timedelta(days=7)):
                assert await repository.latest_tick_ts(session, symbols, since) == everything
    assert everything == {
        "005930": dp.at(10, 0, day=days[1]),
        "000660": dp.at(10, 0, day=days[0]),
        "035420": dp.at(11, 0, day=days[3]),
    }
