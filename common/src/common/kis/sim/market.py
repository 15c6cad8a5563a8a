"""The simulator's price process: daily bars (CSV replay or seeded synthetic) and intraday ticks.

Each trading day of each symbol becomes a deterministic tick path inside the day's OHLC: it
starts at the open, touches the high and the low, ends at the close, and its tick volumes add
up to the day's volume. One tick every ``tick_seconds`` of the 09:00–15:30 KST session. The
path depends only on (seed, code, day), so every quote, chart, book and fill agrees.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
import random
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol

import structlog

from common.clock import KST, to_kst
from common.krx import SESSION_CLOSE, SESSION_OPEN, is_weekday, price_limits, round_to_tick, tick_size

log = structlog.get_logger(__name__)

SESSION_SECONDS = (SESSION_CLOSE.hour * 3600 + SESSION_CLOSE.minute * 60) - (
    SESSION_OPEN.hour * 3600 + SESSION_OPEN.minute * 60
)
BOOK_LEVELS = 10

# Names of a few well-known KRX listings, used when replaying their CSV files.
KNOWN_NAMES: dict[str, str] = {
    "005930": "삼성전자",
    "000660": "SK하이닉스",
    "005380": "현대차",
    "035420": "NAVER",
    "051910": "LG화학",
    "015760": "한국전력",
    "105560": "KB금융",
    "030200": "KT",
}


@dataclass(frozen=True, slots=True)
class DayBar:
    day: date
    open: int
    high: int
    low: int
    close: int
    volume: int


def stable_seed(*parts: object) -> int:
    """A seed that is the same in every process (``hash()`` of a str is salted per process)."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def seeded_rng(*parts: object) -> random.Random:
    """A reproducible generator for the market (simulation, not cryptography)."""
    return random.Random(stable_seed(*parts))  # noqa: S311


def nearest_tick(value: float, lower: int = 1, upper: int | None = None) -> int:
    """The tick-grid price nearest to ``value``, kept inside [lower, upper]."""
    price = max(1, round(value))
    down = round_to_tick(price)
    up = round_to_tick(price, up=True)
    chosen = down if value - down <= up - value else up
    if upper is not None and chosen > upper:
        chosen = upper
    return max(lower, chosen)


class BarSource(Protocol):
    """Where daily bars come from."""

    def knows(self, code: str) -> bool: ...

    def name(self, code: str) -> str: ...

    def history(self, code: str, until: date) -> Sequence[DayBar]:
        """Bars of ``code`` up to and including ``until``, oldest first."""
        ...

    def is_trading_day(self, day: date) -> bool: ...

    def default_start(self) -> datetime | None:
        """A sensible simulated start instant for this source (None: the present)."""
        ...


class CsvBarSource:
    """Replays ``<code>.csv`` files (``date,open,high,low,close,volume``) from one directory."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise FileNotFoundError(f"replay directory {directory} does not exist")
        self._bars: dict[str, list[DayBar]] = {}
        self._days: dict[str, list[date]] = {}
        calendar: set[date] = set()
        for path in sorted(directory.glob("*.csv")):
            code = path.stem
            if len(code) != 6 or not code.isdigit():
                continue
            bars = self._read(path)
            if bars:
                self._bars[code] = bars
                self._days[code] = [bar.day for bar in bars]
                calendar.update(self._days[code])
        if not self._bars:
            raise FileNotFoundError(f"no <6-digit code>.csv files in {directory}")
        self._calendar = sorted(calendar)
        self._calendar_set = calendar
        log.info("kis_sim.market.replay_loaded", directory=str(directory), symbols=sorted(self._bars))

    @staticmethod
    def _read(path: Path) -> list[DayBar]:
        bars: list[DayBar] = []
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                o, h, low, c = (int(float(row[k])) for k in ("open", "high", "low", "close"))
                if min(o, h, low, c) <= 0:
                    continue
                # Real data is kept as is, only made self-consistent (high/low bracket open/close).
                bars.append(
                    DayBar(
                        day=date.fromisoformat(row["date"]),
                        open=o,
                        high=max(h, o, c),
                        low=min(low, o, c),
                        close=c,
                        volume=max(0, int(float(row["volume"]))),
                    )
                )
        bars.sort(key=lambda bar: bar.day)
        return bars

    @property
    def symbols(self) -> list[str]:
        return sorted(self._bars)

    def knows(self, code: str) -> bool:
        return code in self._bars

    def name(self, code: str) -> str:
        return KNOWN_NAMES.get(code, code)

    def history(self, code: str, until: date) -> Sequence[DayBar]:
        bars = self._bars.get(code, [])
        return bars[: bisect_right(self._days.get(code, []), until)]

    def is_trading_day(self, day: date) -> bool:
        return day in self._calendar_set

    def default_start(self) -> datetime | None:
        # 08:50 KST on the 20th-last trading day: a month of replay with history behind it.
        day = self._calendar[max(0, len(self._calendar) - 20)]
        return datetime.combine(day, time(8, 50), tzinfo=KST)


class SyntheticBarSource:
    """A seeded KRX-like market: every 6-digit code trades every weekday since ``EPOCH``."""

    EPOCH = date(2010, 1, 4)

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._bars: dict[str, list[DayBar]] = {}
        self._days: dict[str, list[date]] = {}
        self._state: dict[str, tuple[random.Random, int, float, date]] = {}

    def knows(self, code: str) -> bool:
        return len(code) == 6 and code.isdigit()

    def name(self, code: str) -> str:
        return KNOWN_NAMES.get(code, f"SIM{code}")

    def is_trading_day(self, day: date) -> bool:
        return is_weekday(day) and day >= self.EPOCH

    def default_start(self) -> datetime | None:
        return None

    def history(self, code: str, until: date) -> Sequence[DayBar]:
        if not self.knows(code):
            return []
        self._extend(code, until)
        return self._bars[code][: bisect_right(self._days[code], until)]

    def _extend(self, code: str, until: date) -> None:
        if code not in self._state:
            rng = seeded_rng(self._seed, code, "daily")
            first = nearest_tick(math.exp(rng.uniform(math.log(2_000), math.log(300_000))))
            volume = math.exp(rng.uniform(math.log(50_000), math.log(3_000_000)))
            self._state[code] = (rng, first, volume, self.EPOCH - timedelta(days=1))
            self._bars[code] = []
            self._days[code] = []
        rng, prev_close, base_volume, last = self._state[code]
        day = last + timedelta(days=1)
        bars, days = self._bars[code], self._days[code]
        while day <= until:
            if is_weekday(day):
                bar = self._next_bar(rng, day, prev_close, base_volume)
                bars.append(bar)
                days.append(day)
                prev_close = bar.close
            last = day
            day += timedelta(days=1)
        self._state[code] = (rng, prev_close, base_volume, last)

    @staticmethod
    def _next_bar(rng: random.Random, day: date, prev_close: int, base_volume: float) -> DayBar:
        lower, upper = price_limits(prev_close, day)
        ret = max(-0.25, min(0.25, rng.gauss(0.0002, 0.02)))
        close = nearest_tick(prev_close * (1 + ret), lower, upper)
        open_ = nearest_tick(prev_close * (1 + rng.gauss(0, 0.006)), lower, upper)
        high = nearest_tick(max(open_, close) * (1 + abs(rng.gauss(0, 0.008))), lower, upper)
        low = nearest_tick(min(open_, close) * (1 - abs(rng.gauss(0, 0.008))), lower, upper)
        high = max(high, open_, close)
        low = min(low, open_, close)
        volume = int(base_volume * rng.lognormvariate(0, 0.4))
        return DayBar(day=day, open=open_, high=high, low=low, close=close, volume=volume)


@dataclass(frozen=True, slots=True)
class DayPath:
    """One symbol's ticks for one day, with running aggregates indexed by tick."""

    code: str
    bar: DayBar
    base: int
    prev_volume: int
    tick_seconds: int
    prices: list[int]
    volumes: list[int]
    cum_volume: list[int]
    cum_value: list[int]
    highs: list[int]
    lows: list[int]
    high_at: list[int]
    low_at: list[int]
    buy_side: list[bool]
    cum_buy_volume: list[int]
    cum_buy_count: list[int]
    cum_sell_count: list[int]

    @property
    def count(self) -> int:
        return len(self.prices)

    def tick_time(self, index: int) -> time:
        seconds = SESSION_OPEN.hour * 3600 + SESSION_OPEN.minute * 60 + index * self.tick_seconds
        return time(seconds // 3600, seconds % 3600 // 60, seconds % 60)

    def limits(self) -> tuple[int, int]:
        return price_limits(self.base, self.bar.day)


def build_day_path(
    seed: int, code: str, bar: DayBar, base: int, prev_volume: int, tick_seconds: int
) -> DayPath:
    """The tick path of ``bar``: open → (high, low in random order) → close, tick-rounded, clipped."""
    n = max(4, SESSION_SECONDS // tick_seconds)
    rng = seeded_rng(seed, code, bar.day.isoformat(), "ticks")
    lo, hi = bar.low, bar.high
    prices: list[int]
    if hi == lo:
        prices = [bar.close] * n
    else:
        a, b = sorted(rng.sample(range(1, n - 1), 2))
        high_first = rng.random() < 0.5
        anchors = [(0, bar.open), (a, hi if high_first else lo), (b, lo if high_first else hi), (n - 1, bar.close)]
        step = (hi - lo) * 0.012
        raw: list[float] = [float(bar.open)]
        for (i0, v0), (i1, v1) in itertools.pairwise(anchors):
            m = i1 - i0
            walk = [0.0]
            for _ in range(m):
                walk.append(walk[-1] + rng.gauss(0, step))
            end = walk[-1]
            for k in range(1, m + 1):
                frac = k / m
                raw.append(v0 + (v1 - v0) * frac + walk[k] - frac * end)
        prices = [nearest_tick(min(hi, max(lo, x)), lo, hi) for x in raw]
        for index, value in anchors:
            prices[index] = value
    volumes = _spread_volume(rng, bar.volume, n) if hi != lo or bar.volume else [0] * n

    cum_volume, cum_value, highs, lows, high_at, low_at = [], [], [], [], [], []
    buy_side, cum_buy_volume, cum_buy_count, cum_sell_count = [], [], [], []
    total_volume = total_value = buy_volume = buys = sells = 0
    running_high, running_low = prices[0], prices[0]
    high_index = low_index = 0
    buy = True
    previous = base
    for index, (price, volume) in enumerate(zip(prices, volumes, strict=True)):
        if price != previous:
            buy = price > previous
        previous = price
        total_volume += volume
        total_value += price * volume
        if price > running_high:
            running_high, high_index = price, index
        if price < running_low:
            running_low, low_index = price, index
        if volume:
            if buy:
                buy_volume += volume
                buys += 1
            else:
                sells += 1
        cum_volume.append(total_volume)
        cum_value.append(total_value)
        highs.append(running_high)
        lows.append(running_low)
        high_at.append(high_index)
        low_at.append(low_index)
        buy_side.append(buy)
        cum_buy_volume.append(buy_volume)
        cum_buy_count.append(buys)
        cum_sell_count.append(sells)
    return DayPath(
        code=code,
        bar=bar,
        base=base,
        prev_volume=prev_volume,
        tick_seconds=tick_seconds,
        prices=prices,
        volumes=volumes,
        cum_volume=cum_volume,
        cum_value=cum_value,
        highs=highs,
        lows=lows,
        high_at=high_at,
        low_at=low_at,
        buy_side=buy_side,
        cum_buy_volume=cum_buy_volume,
        cum_buy_count=cum_buy_count,
        cum_sell_count=cum_sell_count,
    )


def _spread_volume(rng: random.Random, volume: int, n: int) -> list[int]:
    """Split ``volume`` over ``n`` ticks with the U-shaped intraday profile of KRX."""
    weights = [(1.0 + 3.0 * (1 - 2 * i / (n - 1)) ** 2) * rng.expovariate(1.0) for i in range(n)]
    scale = volume / sum(weights)
    out = [int(w * scale) for w in weights]
    remainder = volume - sum(out)
    for index in rng.sample(range(n), remainder) if remainder <= n else range(n):
        out[index] += 1
    return out


@dataclass(frozen=True, slots=True)
class Quote:
    """The market of one symbol at one instant, as every endpoint reports it."""

    code: str
    name: str
    path: DayPath
    index: int  # last tick that has happened; -1 before the open
    trading_now: bool

    @property
    def day(self) -> date:
        return self.path.bar.day

    @property
    def base(self) -> int:
        return self.path.base

    @property
    def opened(self) -> bool:
        return self.index >= 0

    @property
    def price(self) -> int:
        return self.path.prices[self.index] if self.opened else self.path.base

    @property
    def open(self) -> int:
        return self.path.prices[0] if self.opened else 0

    @property
    def high(self) -> int:
        return self.path.highs[self.index] if self.opened else 0

    @property
    def low(self) -> int:
        return self.path.lows[self.index] if self.opened else 0

    @property
    def volume(self) -> int:
        return self.path.cum_volume[self.index] if self.opened else 0

    @property
    def value(self) -> int:
        return self.path.cum_value[self.index] if self.opened else 0

    @property
    def vwap(self) -> float:
        return self.value / self.volume if self.volume else float(self.price)

    @property
    def limits(self) -> tuple[int, int]:
        return self.path.limits()

    @property
    def time(self) -> time:
        return self.path.tick_time(self.index) if self.opened else SESSION_OPEN

    def book(self) -> tuple[list[int], list[int], list[int], list[int]]:
        """Ten ask and bid levels around the last price: (ask prices, bid prices, ask sizes, bid sizes)."""
        lower, upper = self.limits
        price = min(upper, max(lower, self.price))
        rng = seeded_rng("book", self.code, self.day.isoformat(), self.index)
        typical = max(10, self.path.bar.volume // max(1, self.path.count) * 3)
        asks: list[int] = []
        bids: list[int] = []
        level = price
        for _ in range(BOOK_LEVELS):
            level = level + tick_size(level)
            asks.append(level if level <= upper else 0)
        level = price
        for _ in range(BOOK_LEVELS):
            bids.append(level if level >= lower else 0)
            level = level - tick_size(level - 1) if level > 1 else 0
        ask_sizes = [int(typical * rng.uniform(0.3, 2.0)) if p else 0 for p in asks]
        bid_sizes = [int(typical * rng.uniform(0.3, 2.0)) if p else 0 for p in bids]
        return asks, bids, ask_sizes, bid_sizes


class Market:
    """Quotes, charts and ticks of every symbol at any instant of the injected clock."""

    def __init__(self, source: BarSource, seed: int, tick_seconds: int, cache_size: int = 512) -> None:
        self.source = source
        self.seed = seed
        self.tick_seconds = tick_seconds
        self._paths: OrderedDict[tuple[str, date], DayPath] = OrderedDict()
        self._cache_size = cache_size

    def knows(self, code: str) -> bool:
        return self.source.knows(code)

    def name(self, code: str) -> str:
        return self.source.name(code)

    def is_trading_day(self, day: date) -> bool:
        return self.source.is_trading_day(day)

    def daily_bars(self, code: str, until: date) -> Sequence[DayBar]:
        return self.source.history(code, until)

    def path(self, code: str, day: date) -> DayPath | None:
        """The tick path of ``code`` on ``day`` (None when it did not trade that day)."""
        key = (code, day)
        cached = self._paths.get(key)
        if cached is not None:
            self._paths.move_to_end(key)
            return cached
        history = self.source.history(code, day)
        if not history or history[-1].day != day:
            return None
        bar = history[-1]
        previous = history[-2] if len(history) > 1 else None
        base = previous.close if previous else bar.open
        built = build_day_path(
            self.seed, code, bar, base, previous.volume if previous else 0, self.tick_seconds
        )
        self._paths[key] = built
        if len(self._paths) > self._cache_size:
            self._paths.popitem(last=False)
        return built

    def tick_index(self, path: DayPath, instant: datetime) -> int:
        """Index of the last tick at or before ``instant`` on the path's day (-1 before the open)."""
        local = to_kst(instant)
        if local.date() < path.bar.day:
            return -1
        if local.date() > path.bar.day:
            return path.count - 1
        opened = datetime.combine(local.date(), SESSION_OPEN, tzinfo=local.tzinfo)
        elapsed = (local - opened).total_seconds()
        if elapsed < 0:
            return -1
        return min(path.count - 1, int(elapsed // path.tick_seconds))

    def quote(self, code: str, instant: datetime) -> Quote | None:
        """The market of ``code`` at ``instant``; None for a code the market does not know."""
        if not self.source.knows(code):
            return None
        local = to_kst(instant)
        today = local.date()
        history = self.source.history(code, today)
        if not history:
            return None
        last = history[-1]
        path = self.path(code, last.day)
        if path is None:
            return None
        index = self.tick_index(path, instant)
        session = SESSION_OPEN <= local.time() < SESSION_CLOSE
        trading_now = last.day == today and session and self.source.is_trading_day(today)
        return Quote(code=code, name=self.name(code), path=path, index=index, trading_now=trading_now)

    def at_index(self, code: str, path: DayPath, index: int) -> Quote:
        return Quote(code=code, name=self.name(code), path=path, index=index, trading_now=False)

    def listed_shares(self, code: str) -> int:
        rng = seeded_rng(self.seed, code, "listed")
        return int(math.exp(rng.uniform(math.log(10_000_000), math.log(2_000_000_000))))

    def fundamentals(self, code: str, price: int) -> dict[str, str]:
        """Seeded but stable per-share figures (EPS, BPS and the ratios they imply)."""
        rng = seeded_rng(self.seed, code, "fundamentals")
        per = rng.uniform(5, 40)
        pbr = rng.uniform(0.4, 4.0)
        eps = max(1, round(price / per))
        bps = max(1, round(price / pbr))
        return {"per": f"{price / eps:.2f}", "pbr": f"{price / bps:.2f}", "eps": f"{eps:.2f}", "bps": f"{bps:.2f}"}

    def minute_bars(self, path: DayPath, until_index: int) -> list[tuple[time, int, int, int, int, int, int]]:
        """One-minute bars of a day up to tick ``until_index``: (start, open, high, low, close, volume, value)."""
        per_minute = max(1, 60 // path.tick_seconds)
        bars: list[tuple[time, int, int, int, int, int, int]] = []
        for start in range(0, until_index + 1, per_minute):
            end = min(until_index, start + per_minute - 1)
            prices = path.prices[start : end + 1]
            volume = sum(path.volumes[start : end + 1])
            value = path.cum_value[end] - (path.cum_value[start - 1] if start else 0)
            bars.append((path.tick_time(start), prices[0], max(prices), min(prices), prices[-1], volume, value))
        return bars


def build_market(data_dir: Path | None, seed: int, tick_seconds: int) -> Market:
    source: BarSource = CsvBarSource(data_dir) if data_dir is not None else SyntheticBarSource(seed)
    return Market(source, seed=seed, tick_seconds=tick_seconds)
