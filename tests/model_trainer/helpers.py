"""Small builders for the model-trainer tests: hand-made bars and a one-symbol market."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import numpy as np

from common.clock import KST
from model_trainer.data import SymbolBars
from model_trainer.env import CostModel, Market


def bars(
    days: Sequence[date], opens: Sequence[int], closes: Sequence[int], volumes: Sequence[int] | None = None
) -> SymbolBars:
    stamps = np.array(
        [int(datetime.combine(d, time(9), tzinfo=KST).astimezone(UTC).timestamp()) for d in days], dtype=np.int64
    )
    o = np.array(opens, dtype=np.int64)
    c = np.array(closes, dtype=np.int64)
    return SymbolBars(
        symbol="005930",
        timeframe="1d",
        stamps=stamps,
        days=np.array(days, dtype="datetime64[D]"),
        open=o,
        high=np.maximum(o, c),
        low=np.minimum(o, c),
        close=c,
        volume=np.array(volumes if volumes is not None else [1000] * len(days), dtype=np.int64),
    )


def market(series: SymbolBars, costs: CostModel | None = None) -> Market:
    n = len(series)
    return Market.build(
        [series], [np.zeros((n, 1), dtype=np.float32)], [np.zeros((n, 0), dtype=np.float32)], 1, costs or CostModel()
    )
