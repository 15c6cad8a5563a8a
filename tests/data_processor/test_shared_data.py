"""The whole real KRX daily folder through the processor on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import talib
from sqlalchemy import func, select

from common.contracts import Bar
from common.db import BarRecord, FeatureRecord
from common.db.processing import BarFlag, QuarantinedRecord
from data_processor.service import quarantine_source_rows
from data_processor.sources import read_daily_csv, source_id
from data_processor.validation import FLAG_CORPORATE_ACTION, FLAG_HALT, INVALID_RECORD

BATCH = 1_000


async def feed(env: Any, dp: SimpleNamespace, shared_data: Path) -> tuple[int, dict[str, list[Bar]]]:
    """Quarantine unreadable rows, publish the rest in batches; returns (rows read, bars by symbol)."""
    rows = 0
    by_symbol: dict[str, list[Bar]] = {}
    for path in sorted(shared_data.glob("*.csv")):  # noqa: ASYNC240 — a handful of local files
        bars, rejected = read_daily_csv(path)
        rows += len(bars) + len(rejected)
        async with env.runtime.sessionmaker.begin() as session:
            await quarantine_source_rows(session, source_id(path), rejected, env.runtime.clock.now())
        for start in range(0, len(bars), BATCH):
            await env.bars(dp.bar_envelope(bars[start : start + BATCH]))
        if bars:
            by_symbol[path.stem] = bars
    return rows, by_symbol


async def test_every_valid_bar_is_stored_once_and_bad_rows_are_quarantined_with_reasons(
    pg_env: Any, dp: SimpleNamespace, shared_data: Path
) -> None:
    rows, by_symbol = await feed(pg_env, dp, shared_data)
    await feed(pg_env, dp, shared_data)  # the whole folder again: nothing is stored or quarantined twice

    async with pg_env.session() as session:
        stored = (await session.execute(select(func.count()).select_from(BarRecord))).scalar_one()
        distinct = (
            await session.execute(
                select(func.count()).select_from(select(BarRecord.symbol, BarRecord.ts).distinct().subquery())
            )
        ).scalar_one()
        reasons = Counter((await session.execute(select(QuarantinedRecord.reason))).scalars().all())
        flags = Counter((await session.execute(select(BarFlag.flag))).scalars().all())
        features = (await session.execute(select(func.count()).select_from(FeatureRecord))).scalar_one()

    quarantined = sum(reasons.values())
    assert stored == distinct == rows - quarantined
    assert reasons[INVALID_RECORD] == 600  # kospi.csv: an index, not a KRX stock code
    assert quarantined == 600 + sum(c for r, c in reasons.items() if r != INVALID_RECORD)
    assert flags[FLAG_HALT] >= 50  # the zero-volume days of the README
    assert flags[FLAG_CORPORATE_ACTION] >= 1  # NAVER's relisting after its 2013 split
    assert features == 2 * stored  # one row per bar in each of ta.v1 and mt-ohlcv-v1

    samsung = by_symbol["005930"]
    response = await pg_env.client.get("/indicator/rsi", params={"symbol": "005930", "window": 14})
    points = response.json()["points"]
    expected = talib.RSI(np.array([b.close for b in samsung], dtype=np.float64), timeperiod=14)
    assert len(points) == len(samsung)
    assert [p["value"] for p in points][14:] == expected[14:].tolist()
