"""The environment's accounting against hand-computed KRX cases: fills, fees, tax, limits, shares."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from common import krx
from model_trainer.env import CostModel, VecTradingEnv, legacy_price_limits

from .helpers import bars, market

ALL_IN, FLAT = 4, 0  # indices into the default actions (0, .25, .5, .75, 1)


def one_env(series_days: list[date], opens: list[int], closes: list[int], **kwargs: object) -> VecTradingEnv:
    m = market(bars(series_days, opens, closes, kwargs.pop("volumes", None)), kwargs.pop("costs", None))  # type: ignore[arg-type]
    env = VecTradingEnv(m, window=1, segments=[(0, len(closes) - 1)], initial_cash=1_000_000, **kwargs)  # type: ignore[arg-type]
    env.reset()
    return env


def test_round_trip_pays_slippage_commission_and_2024_sell_tax_exactly() -> None:
    days = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
    env = one_env(days, [10_000, 10_000, 10_600], [10_000, 10_500, 10_600])

    _, _, _, info = env.step(np.array([ALL_IN]))
    # target floor(1e6 / 10,000) = 100, but at 10,010 (open + one 10-won tick) plus fees only 99 fit
    assert env.shares[0] == 99
    assert info.costs[0] == 148 == krx.commission(990_990)
    assert env.cash[0] == 1_000_000 - 990_990 - 148 == 8_862

    _, _, done, info = env.step(np.array([FLAT]))
    # sold at 10,590 (open - one tick): 1,048,410 gross, fee 157, tax 0.18 % = 1,887
    assert krx.sell_tax(1_048_410, days[2]) == 1_887
    assert info.costs[0] == 157 + 1_887
    assert env.shares[0] == 0
    assert env.cash[0] == 8_862 + 1_048_410 - 157 - 1_887 == 1_055_228
    assert done[0]


def test_reward_is_the_log_change_of_value_net_of_costs() -> None:
    days = [date(2024, 3, 4), date(2024, 3, 5)]
    env = one_env(days, [10_000, 10_000], [10_000, 10_500])
    _, reward, _, info = env.step(np.array([ALL_IN]))
    value = 8_862 + 99 * 10_500
    assert info.value[0] == value
    assert reward[0] == pytest.approx(100 * np.log(value / 1_000_000), rel=1e-6)


@pytest.mark.parametrize(
    ("sell_day", "rate"),
    [
        (date(2019, 5, 31), "0.0030"),
        (date(2019, 6, 3), "0.0025"),
        (date(2021, 6, 1), "0.0023"),
        (date(2023, 6, 1), "0.0020"),
        (date(2025, 6, 2), "0.0015"),
        (date(2026, 6, 1), "0.0020"),
    ],
)
def test_sell_tax_follows_the_date_of_the_fill(sell_day: date, rate: str) -> None:
    days = [sell_day - timedelta(days=2), sell_day - timedelta(days=1), sell_day]
    env = one_env(days, [50_000, 50_000, 50_000], [50_000, 50_000, 50_000])
    env.step(np.array([ALL_IN]))
    shares, cash = int(env.shares[0]), int(env.cash[0])
    _, _, _, info = env.step(np.array([FLAT]))
    gross = shares * 49_950  # one 50-won tick below the open
    expected_tax = int(gross * float(rate) + 1e-9)
    assert info.costs[0] == krx.commission(gross) + expected_tax
    assert env.cash[0] == cash + gross - krx.commission(gross) - expected_tax


def test_tax_schedule_is_configurable() -> None:
    costs = CostModel(sell_tax_schedule=((date(1900, 1, 1), 0.001),), commission_rate=0.0)
    days = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
    env = one_env(days, [10_000] * 3, [10_000] * 3, costs=costs)
    env.step(np.array([ALL_IN]))
    shares = int(env.shares[0])
    _, _, _, info = env.step(np.array([FLAT]))
    assert info.costs[0] == shares * 9_990 // 1000


def test_no_buy_when_the_next_open_is_locked_at_the_upper_limit() -> None:
    # base 10,000 on 2024-03-04: +30 % limit is 13,000; the next day opens there
    days = [date(2024, 3, 4), date(2024, 3, 5)]
    env = one_env(days, [10_000, 13_000], [10_000, 13_000])
    _, _, _, info = env.step(np.array([ALL_IN]))
    assert env.shares[0] == 0 and env.cash[0] == 1_000_000 and info.costs[0] == 0


def test_no_sell_when_the_next_open_is_locked_at_the_lower_limit() -> None:
    days = [date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)]
    env = one_env(days, [10_000, 10_000, 7_000], [10_000, 10_000, 7_000])
    env.step(np.array([ALL_IN]))
    held = int(env.shares[0])
    env.step(np.array([FLAT]))
    assert env.shares[0] == held  # 7,000 is the -30 % limit of a 10,000 base


def test_limit_is_15_percent_before_2015_06_15_and_configurable_before_1998_12_07() -> None:
    assert krx.price_limits(10_000, date(2010, 1, 4)) == (8_500, 11_500)
    days = [date(2010, 1, 4), date(2010, 1, 5)]
    env = one_env(days, [10_000, 11_500], [10_000, 11_500])
    env.step(np.array([ALL_IN]))
    assert env.shares[0] == 0

    assert legacy_price_limits(10_000, 0.06) == (9_400, 10_600)
    old = [date(1996, 1, 4), date(1996, 1, 5)]
    env = one_env(old, [10_000, 10_600], [10_000, 10_600], costs=CostModel(legacy_limit_rate=0.06))
    env.step(np.array([ALL_IN]))
    assert env.shares[0] == 0
    env = one_env(old, [10_000, 10_600], [10_000, 10_600])  # default legacy rate 15 %: fills
    env.step(np.array([ALL_IN]))
    assert env.shares[0] > 0


def test_slippage_follows_the_tick_table_and_stays_inside_the_limit() -> None:
    days = [date(2024, 3, 4), date(2024, 3, 5)]
    env = one_env(days, [5_000, 4_995], [5_000, 5_000])
    env.step(np.array([ALL_IN]))
    assert env.market.execution.buy_price[1] == 5_000  # 4,995 + one 5-won tick
    # an open one tick under the upper limit fills at the limit, not above it
    env = one_env(days, [10_000, 12_990], [10_000, 12_990])
    assert env.market.execution.buy_price[1] == 13_000
    env.step(np.array([ALL_IN]))
    assert env.shares[0] > 0


def test_halted_bar_does_not_trade() -> None:
    days = [date(2024, 3, 4), date(2024, 3, 5)]
    env = one_env(days, [10_000, 10_000], [10_000, 10_000], volumes=[1000, 0])
    env.step(np.array([ALL_IN]))
    assert env.shares[0] == 0


def test_random_trading_keeps_integer_shares_and_non_negative_cash() -> None:
    rng = np.random.default_rng(7)
    n = 400
    closes = np.maximum(1_000, 30_000 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))).astype(int)
    opens = np.maximum(1_000, (closes * np.exp(rng.normal(0, 0.01, n)))).astype(int)
    days = [date(2017, 1, 2) + timedelta(days=i) for i in range(n)]
    m = market(bars(days, list(opens), list(closes)))
    env = VecTradingEnv(m, window=1, segments=[(0, n - 1)] * 8, initial_cash=3_000_000, rebalance_band=0.0)
    env.reset()
    for _ in range(n - 1):
        env.step(rng.integers(0, 5, size=8))
        assert (env.cash >= 0).all()
        assert env.shares.dtype == np.int64 and (env.shares >= 0).all()
    assert env.done.all()


def test_rebalance_band_skips_small_drifts_but_not_a_full_exit() -> None:
    days = [date(2024, 3, 4) + timedelta(days=i) for i in range(4)]
    env = one_env(days, [10_000, 10_000, 10_100, 10_100], [10_000, 10_100, 10_100, 10_100], rebalance_band=0.05)
    env.step(np.array([2]))  # 50 %
    held = int(env.shares[0])
    env.step(np.array([2]))  # still ~50 %: the drift is under the band, nothing trades
    assert env.shares[0] == held
    env.step(np.array([FLAT]))
    assert env.shares[0] == 0
