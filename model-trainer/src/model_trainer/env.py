"""The trading environment: KRX execution rules and a vectorised, integer-KRW portfolio.

Decisions are taken at a bar's close and filled at the next bar's open, at least one tick
worse (buys up, sells down, along the KRX tick table), never outside the day's price limits.
Commission is paid on both sides, the sell tax on sells by the fill date; a buy at a locked
upper limit or a sell at a locked lower limit does not fill, nor does anything on a halted
(zero-volume) bar. Shares are integers and cash is integer KRW that never goes negative.

``VecTradingEnv`` steps many (symbol, window) environments at once as numpy arrays: the
trainer, the backtests and the baselines all run through this one engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from common import krx
from model_trainer.data import SymbolBars

IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

RATE_SCALE = 100_000_000  # fees are integer numerators over 1e8: exact for KRX's rates
LEGACY_LIMIT_CUTOFF = date(1998, 12, 7)  # ±15 % from here (common.krx), configurable before
DEFAULT_ACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def _default_tax_schedule() -> tuple[tuple[date, float], ...]:
    return tuple((start, float(rate)) for start, rate in krx.SELL_TAX_SCHEDULE)


@dataclass(frozen=True)
class CostModel:
    """Execution realism; every field is a training/backtest job parameter."""

    commission_rate: float = float(krx.COMMISSION_RATE)
    slippage_ticks: int = 1
    sell_tax_schedule: tuple[tuple[date, float], ...] = field(default_factory=_default_tax_schedule)
    price_limits: bool = True
    legacy_limit_rate: float = 0.15  # daily limit before 1998-12-07 (history used 6–12 %; configurable)
    block_halted: bool = True

    def rate_numerator(self, rate: float) -> int:
        return round(rate * RATE_SCALE)

    def tax_numerator(self, day: date) -> int:
        rate = self.sell_tax_schedule[0][1]
        for start, value in self.sell_tax_schedule:
            if day >= start:
                rate = value
        return self.rate_numerator(rate)


def legacy_price_limits(base_price: int, rate: float) -> tuple[int, int]:
    """(lower, upper) for a given ±rate, moved inside onto the tick grid as ``krx.price_limits`` does."""
    r = Decimal(str(rate))
    raw_upper = int((Decimal(base_price) * (1 + r)).to_integral_value(rounding=ROUND_DOWN))
    lower_exact = Decimal(base_price) * (1 - r)
    raw_lower = int(lower_exact.to_integral_value(rounding=ROUND_DOWN))
    if Decimal(raw_lower) < lower_exact:
        raw_lower += 1
    return max(1, krx.round_to_tick(max(raw_lower, 1), up=True)), krx.round_to_tick(raw_upper)


def day_limits(base_price: int, day: date, costs: CostModel) -> tuple[int, int]:
    if day >= LEGACY_LIMIT_CUTOFF:
        return krx.price_limits(base_price, day)
    return legacy_price_limits(base_price, costs.legacy_limit_rate)


@dataclass(frozen=True)
class Execution:
    """Per-bar fill prices and permissions for an order decided at the previous bar's close."""

    buy_price: IntArray
    sell_price: IntArray
    buy_blocked: BoolArray
    sell_blocked: BoolArray
    tax_num: IntArray


def prepare_execution(bars: SymbolBars, costs: CostModel) -> Execution:
    n = len(bars)
    buy = np.empty(n, dtype=np.int64)
    sell = np.empty(n, dtype=np.int64)
    buy_blocked = np.zeros(n, dtype=bool)
    sell_blocked = np.zeros(n, dtype=bool)
    tax = np.empty(n, dtype=np.int64)
    base = bars.previous_session_close()
    tax_cache: dict[Any, int] = {}
    for i in range(n):
        day = bars.days[i].item()
        open_price = int(bars.open[i])
        up = krx.ticks_away(open_price, costs.slippage_ticks)
        down = max(1, krx.ticks_away(open_price, -costs.slippage_ticks))
        if costs.price_limits:
            lower, upper = day_limits(int(base[i]), day, costs)
            buy_blocked[i] = open_price >= upper
            sell_blocked[i] = open_price <= lower
            up = min(up, max(upper, open_price))
            down = max(down, min(lower, open_price))
        buy[i], sell[i] = up, down
        if day not in tax_cache:
            tax_cache[day] = costs.tax_numerator(day)
        tax[i] = tax_cache[day]
    if costs.block_halted:
        halted = bars.volume == 0
        buy_blocked |= halted
        sell_blocked |= halted
    return Execution(buy, sell, buy_blocked, sell_blocked, tax)


@dataclass
class Market:
    """Every symbol's bars, execution arrays and per-bar observation inputs, concatenated.

    ``window_features`` are the normalised features ``[T, F]``; ``static`` is what the agent
    sees of the bar besides its window (regime probabilities, the LSTM forecast) ``[T, E]``.
    """

    symbols: list[str]
    offsets: IntArray  # symbol s occupies [offsets[s], offsets[s+1])
    days: NDArray[Any]
    close: IntArray
    execution: Execution
    window_features: NDArray[np.float32]
    static: NDArray[np.float32]
    first_valid: IntArray  # per symbol: first global index with a complete feature window
    costs: CostModel

    @classmethod
    def build(
        cls,
        series: Sequence[SymbolBars],
        window_features: Sequence[NDArray[Any]],
        static: Sequence[NDArray[Any]],
        window: int,
        costs: CostModel,
    ) -> Market:
        lengths = [len(s) for s in series]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        executions = [prepare_execution(s, costs) for s in series]
        feats = np.concatenate(window_features).astype(np.float32)
        first_valid = []
        for s in range(len(series)):
            finite = np.isfinite(feats[offsets[s] : offsets[s + 1]]).all(axis=1)
            # a window is complete once `window` consecutive rows are finite (warm-up is a prefix)
            first = int(np.argmax(finite)) if finite.any() else lengths[s]
            first_valid.append(offsets[s] + first + window - 1)
        return cls(
            symbols=[s.symbol for s in series],
            offsets=offsets,
            days=np.concatenate([s.days for s in series]),
            close=np.concatenate([s.close for s in series]),
            execution=Execution(
                *(np.concatenate([getattr(e, f) for e in executions]) for f in Execution.__dataclass_fields__)
            ),
            window_features=np.nan_to_num(feats, nan=0.0),
            static=np.concatenate(static).astype(np.float32),
            first_valid=np.array(first_valid, dtype=np.int64),
            costs=costs,
        )

    def day_range(self, symbol_index: int, start: date | None, end: date | None) -> tuple[int, int]:
        """Global [first, last] indices of a symbol's bars within [start, end] that have a full window."""
        lo, hi = int(self.offsets[symbol_index]), int(self.offsets[symbol_index + 1])
        days = self.days[lo:hi]
        first = lo + (int(np.searchsorted(days, np.datetime64(start, "D"))) if start else 0)
        last = lo + (int(np.searchsorted(days, np.datetime64(end, "D"), side="right")) if end else hi - lo) - 1
        return max(first, int(self.first_valid[symbol_index])), last


@dataclass(frozen=True)
class RewardConfig:
    """Change in log portfolio value net of costs, minus an optional variance penalty."""

    risk_penalty: float = 0.0  # λ in r - λ·r², a per-step mean-variance adjustment
    scale: float = 100.0  # log-returns are ~1e-2: scaled so the critic's targets are O(1)


@dataclass
class StepInfo:
    traded_value: IntArray
    costs: IntArray
    value: IntArray
    log_return: FloatArray


class VecTradingEnv:
    """``n`` environments stepped at once.

    ``segments`` (global [first, last] index pairs) fixes one window per environment for a
    backtest: an environment that reaches its last bar stays done. Without segments the
    environments sample training episodes of ``episode_length`` bars from ``ranges`` and
    reset themselves when done (``step`` then returns the new episode's first observation).
    """

    def __init__(
        self,
        market: Market,
        *,
        window: int,
        actions: Sequence[float] = DEFAULT_ACTIONS,
        reward: RewardConfig | None = None,
        initial_cash: int = 100_000_000,
        rebalance_band: float = 0.05,
        segments: Sequence[tuple[int, int]] | None = None,
        ranges: Sequence[tuple[int, int]] | None = None,
        n_envs: int = 1,
        episode_length: int = 256,
        seed: int = 0,
    ) -> None:
        if segments is None and not ranges:
            raise ValueError("give fixed segments or ranges to sample episodes from")
        self.market = market
        self.window = window
        self.actions = np.asarray(actions, dtype=np.float64)
        self.costs = market.costs
        self.reward = reward or RewardConfig()
        self.initial_cash = int(initial_cash)
        self.rebalance_band = rebalance_band
        self.commission_num = self.costs.rate_numerator(self.costs.commission_rate)
        self.rng = np.random.default_rng(seed)
        self.fixed = segments is not None
        self.episode_length = episode_length
        if segments is not None:
            self.n = len(segments)
            self.starts = np.array([s[0] for s in segments], dtype=np.int64)
            self.ends = np.array([s[1] for s in segments], dtype=np.int64)
        else:
            assert ranges is not None
            usable = [(a, b) for a, b in ranges if b - a >= 2]
            if not usable:
                raise ValueError("no range is long enough for an episode")
            self.ranges = np.array(usable, dtype=np.int64)
            spans = (self.ranges[:, 1] - self.ranges[:, 0]).astype(np.float64)
            self.range_weights = spans / spans.sum()
            self.n = n_envs
            self.starts = np.zeros(n_envs, dtype=np.int64)
            self.ends = np.zeros(n_envs, dtype=np.int64)
        self.cursor = self.starts.copy()
        self.cash = np.full(self.n, self.initial_cash, dtype=np.int64)
        self.shares = np.zeros(self.n, dtype=np.int64)
        self.done = np.zeros(self.n, dtype=bool)
        self.episodes = 0
        self._offsets = np.arange(-window + 1, 1, dtype=np.int64)
        f = market.window_features.shape[1]
        self.obs_dim = window * f + market.static.shape[1] + 1

    # -- state ---------------------------------------------------------------------------------

    def _sample(self, which: NDArray[np.intp]) -> None:
        k = len(which)
        picks = self.rng.choice(len(self.ranges), size=k, p=self.range_weights)
        lo, hi = self.ranges[picks, 0], self.ranges[picks, 1]
        length = np.minimum(self.episode_length, hi - lo)
        start = lo + (self.rng.random(k) * (hi - lo - length + 1)).astype(np.int64)
        self.starts[which] = start
        self.ends[which] = start + length
        self._restart(which)

    def _restart(self, which: NDArray[np.intp]) -> None:
        self.cursor[which] = self.starts[which]
        self.cash[which] = self.initial_cash
        self.shares[which] = 0
        self.done[which] = False

    def reset(self) -> NDArray[np.float32]:
        everyone = np.arange(self.n)
        if self.fixed:
            self._restart(everyone)
        else:
            self._sample(everyone)
        return self.observe()

    def values(self) -> IntArray:
        return self.cash + self.shares * self.market.close[self.cursor]

    def position(self) -> FloatArray:
        value = self.values()
        return np.where(value > 0, self.shares * self.market.close[self.cursor] / np.maximum(value, 1), 0.0)

    def observe(self) -> NDArray[np.float32]:
        idx = self.cursor[:, None] + self._offsets[None, :]
        window = self.market.window_features[idx].reshape(self.n, -1)
        static = self.market.static[self.cursor]
        return np.concatenate([window, static, self.position()[:, None].astype(np.float32)], axis=1)

    # -- dynamics ------------------------------------------------------------------------------

    def step(self, action: NDArray[Any]) -> tuple[NDArray[np.float32], NDArray[np.float32], BoolArray, StepInfo]:
        """Decide at the close of ``cursor``, fill at the next open, value at the next close."""
        m, ex = self.market, self.market.execution
        t = self.cursor
        nxt = np.where(self.done, t, t + 1)
        live = ~self.done
        close_t = m.close[t]
        value_t = self.cash + self.shares * close_t
        target_frac = self.actions[np.asarray(action, dtype=np.int64)]
        target = np.floor(target_frac * value_t / close_t).astype(np.int64)
        delta = target - self.shares
        # Small drifts are not worth the fees; a full exit always goes through.
        small = np.abs(delta) * close_t < self.rebalance_band * value_t
        delta = np.where(small & (target != 0), 0, delta)
        delta = np.where(live, delta, 0)

        # Sells first: they free the cash that buys may need.
        q_sell = np.where((delta < 0) & ~ex.sell_blocked[nxt], -delta, 0)
        gross_sell = q_sell * ex.sell_price[nxt]
        fee_sell = gross_sell * self.commission_num // RATE_SCALE
        tax = gross_sell * ex.tax_num[nxt] // RATE_SCALE
        self.cash += gross_sell - fee_sell - tax
        self.shares -= q_sell

        price = ex.buy_price[nxt]
        want = np.where((delta > 0) & ~ex.buy_blocked[nxt], delta, 0)
        per_share = price * (1.0 + self.commission_num / RATE_SCALE)
        q_buy = np.minimum(want, np.floor(self.cash / per_share).astype(np.int64))
        gross_buy = q_buy * price
        fee_buy = gross_buy * self.commission_num // RATE_SCALE
        over = gross_buy + fee_buy > self.cash
        while over.any():  # float rounding in the affordability estimate: back off one share
            q_buy = q_buy - over
            gross_buy = q_buy * price
            fee_buy = gross_buy * self.commission_num // RATE_SCALE
            over = gross_buy + fee_buy > self.cash
        self.cash -= gross_buy + fee_buy
        self.shares += q_buy

        self.cursor = nxt
        value_n = self.cash + self.shares * m.close[nxt]
        log_ret = np.where(live, np.log(np.maximum(value_n, 1) / np.maximum(value_t, 1)), 0.0)
        reward = (log_ret - self.reward.risk_penalty * log_ret**2) * self.reward.scale
        info = StepInfo(
            traded_value=gross_sell + gross_buy, costs=fee_sell + tax + fee_buy, value=value_n, log_return=log_ret
        )
        finished = live & (self.cursor >= self.ends)
        self.done |= finished
        done_now = finished.copy()
        if not self.fixed and finished.any():
            self.episodes += int(finished.sum())
            self._sample(np.flatnonzero(finished))
        return self.observe(), reward.astype(np.float32), done_now, info
