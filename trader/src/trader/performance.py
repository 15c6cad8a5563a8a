"""The dashboard's performance view: equity curve, buy & hold benchmark, drawdown, metrics.

The equity curve is what the broker reported at each reconciliation (cash plus holdings at the
broker's price, from ``account_snapshots``), ending with the ledger's equity now. The benchmark
holds the given symbols (the watchlist, else what the account holds or traded) in equal
weights from the first point, valued at stored daily closes (``bars``), or at the broker's
prices in the snapshots for a symbol without bars. Pure functions here; SQL in the repository.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from common.clock import KST

from .models import AccountSnapshot, Fill
from .schemas import PerformanceMetrics, PerformancePoint, PerformanceView

TRADING_DAYS = 252


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: int


def snapshot_equity(snapshot: AccountSnapshot) -> int:
    holdings = snapshot.holdings or {}
    value = sum(int(h.get("quantity", 0)) * int(h.get("price", 0)) for h in holdings.values() if isinstance(h, dict))
    return int(snapshot.broker_cash) + value


def snapshot_prices(snapshots: Iterable[AccountSnapshot]) -> dict[str, list[tuple[datetime, int]]]:
    prices: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for snapshot in snapshots:
        for symbol, holding in (snapshot.holdings or {}).items():
            if isinstance(holding, dict) and int(holding.get("price", 0)) > 0:
                prices[symbol].append((snapshot.at, int(holding["price"])))
    return prices


def downsample(points: Sequence[EquityPoint], limit: int) -> list[EquityPoint]:
    """At most ``limit`` points, evenly spaced, always keeping the first and the last."""
    if len(points) <= limit:
        return list(points)
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


class PriceSeries:
    """Prices of one symbol over time; ``at(t)`` is the last price at or before ``t`` (else the first)."""

    def __init__(self, observations: Iterable[tuple[datetime, int]]) -> None:
        ordered = sorted(observations)
        self.times = [t for t, _ in ordered]
        self.prices = [p for _, p in ordered]

    def at(self, when: datetime) -> int | None:
        if not self.prices:
            return None
        index = bisect.bisect_right(self.times, when) - 1
        return self.prices[max(index, 0)]


def benchmark(points: Sequence[EquityPoint], series: Mapping[str, PriceSeries]) -> list[int | None]:
    """Equal-weight buy & hold of ``series`` bought with the first point's equity."""
    usable = {s: p for s, p in series.items() if p.prices}
    if not points or not usable:
        return [None] * len(points)
    start = points[0]
    bases = {s: p.at(start.at) for s, p in usable.items()}
    values: list[int | None] = []
    for point in points:
        ratios = [p.at(point.at) / bases[s] for s, p in usable.items() if bases[s]]  # type: ignore[operator]
        values.append(round(start.equity * statistics.fmean(ratios)) if ratios else None)
    return values


def drawdowns(equities: Sequence[int]) -> list[float]:
    peak = 0
    out: list[float] = []
    for value in equities:
        peak = max(peak, value)
        out.append((peak - value) / peak if peak > 0 else 0.0)
    return out


def daily_returns(points: Sequence[EquityPoint]) -> list[float]:
    """Returns between the last equity of consecutive KST days."""
    closes: dict[date, int] = {}
    for point in points:
        closes[point.at.astimezone(KST).date()] = point.equity
    values = [closes[d] for d in sorted(closes)]
    return [b / a - 1 for a, b in itertools.pairwise(values) if a > 0]


def win_rate(fills: Sequence[Fill]) -> tuple[float | None, int]:
    """Share of sells that closed at a profit after fees, replaying fills at average cost.

    A sell of shares bought before the first recorded fill (adopted from the broker) has no
    known cost and is not counted.
    """
    quantity: dict[str, int] = defaultdict(int)
    cost: dict[str, float] = defaultdict(float)
    wins = closed = 0
    for fill in sorted(fills, key=lambda f: f.filled_at):
        if fill.side == "buy":
            quantity[fill.symbol] += fill.quantity
            cost[fill.symbol] += fill.gross + fill.commission
            continue
        held = quantity[fill.symbol]
        if held <= 0:
            continue
        sold = min(fill.quantity, held)
        basis = cost[fill.symbol] * sold / held
        proceeds = fill.gross * sold / fill.quantity - fill.commission - fill.tax
        closed += 1
        wins += proceeds > basis
        quantity[fill.symbol] -= sold
        cost[fill.symbol] -= basis
    return (wins / closed if closed else None), closed


def sharpe(returns: Sequence[float]) -> float | None:
    if len(returns) < 2:
        return None
    deviation = statistics.pstdev(returns)
    return statistics.fmean(returns) / deviation * math.sqrt(TRADING_DAYS) if deviation > 0 else None


def performance(
    points: Sequence[EquityPoint],
    prices: Mapping[str, PriceSeries],
    fills: Sequence[Fill],
    *,
    limit: int,
) -> PerformanceView:
    """Everything the dashboard's performance panel shows, from the stored history."""
    ordered = sorted(points, key=lambda p: p.at)
    shown = downsample(ordered, limit)
    bench = benchmark(shown, prices)
    dd = drawdowns([p.equity for p in shown])
    full_dd = drawdowns([p.equity for p in ordered])
    rate, closed = win_rate(fills)
    first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
    bench_last = next((v for v in reversed(bench) if v is not None), None)
    return PerformanceView(
        points=[
            PerformancePoint(at=p.at, equity=p.equity, benchmark=b, drawdown=round(d, 6))
            for p, b, d in zip(shown, bench, dd, strict=True)
        ],
        benchmark_symbols=sorted(s for s, p in prices.items() if p.prices),
        metrics=PerformanceMetrics(
            start_equity=first.equity if first else None,
            equity=last.equity if last else None,
            total_return=(last.equity / first.equity - 1) if first and last and first.equity > 0 else None,
            benchmark_return=(bench_last / bench[0] - 1) if bench_last is not None and bench and bench[0] else None,
            sharpe=sharpe(daily_returns(ordered)),
            max_drawdown=max(full_dd) if full_dd else None,
            win_rate=rate,
            closed_trades=closed,
            fills=len(fills),
        ),
    )
