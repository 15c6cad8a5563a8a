"""Simulator: replay of the real KRX daily bars in ../shared/data/krx-daily (skipped when absent, CI=true fails)."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta

from common.clock import KST, FixedClock
from common.kis.sim.market import CsvBarSource
from common.krx import price_limits


def csv_rows(folder, code: str) -> dict[str, dict[str, int]]:
    with (folder / f"{code}.csv").open() as handle:
        return {
            row["date"].replace("-", ""): {k: int(v) for k, v in row.items() if k != "date"}
            for row in csv.DictReader(handle)
        }


async def test_replay_serves_the_csv_day_and_previous_close(shared_data, start_sim, connect):
    clock = FixedClock(datetime(2017, 6, 2, 9, 0, tzinfo=KST))
    async with start_sim(clock, data_dir=shared_data) as sim, connect(sim, "real") as real:
        params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
        opening = (await real.get("quotations/inquire-price", "FHKST01010100", params)).json()["output"]
        clock.advance(timedelta(hours=6, minutes=30))  # 15:30, the close
        await real.login()
        closing = (await real.get("quotations/inquire-price", "FHKST01010100", params)).json()["output"]
        chart = (
            await real.get(
                "quotations/inquire-daily-itemchartprice",
                "FHKST03010100",
                {**params, "FID_INPUT_DATE_1": "20170501", "FID_INPUT_DATE_2": "20170602",
                 "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "1"},
            )
        ).json()["output2"]
    rows = csv_rows(shared_data, "005930")
    assert opening["stck_sdpr"] == "2234000"  # 2017-06-01 close
    assert opening["stck_oprc"] == "2253000"
    lower, upper = price_limits(2_234_000, datetime(2017, 6, 2).date())
    assert (opening["stck_llam"], opening["stck_mxpr"]) == (str(lower), str(upper))
    day = rows["20170602"]
    assert (closing["stck_prpr"], closing["stck_hgpr"], closing["stck_lwpr"]) == (
        str(day["close"]), str(day["high"]), str(day["low"])
    )
    assert closing["acml_vol"] == str(day["volume"])
    assert [r["stck_bsop_date"] for r in chart][:3] == ["20170602", "20170601", "20170531"]
    assert "20170503" not in {r["stck_bsop_date"] for r in chart}  # a KRX holiday is absent from the data
    for row in chart:
        source = rows[row["stck_bsop_date"]]
        assert row["stck_clpr"] == str(source["close"]) and row["acml_vol"] == str(source["volume"])


async def test_replay_limits_are_15_percent_before_2015_06_15(shared_data, start_sim, connect):
    clock = FixedClock(datetime(2014, 3, 4, 10, 0, tzinfo=KST))
    async with start_sim(clock, data_dir=shared_data) as sim, connect(sim, "real") as real:
        output = (
            await real.get(
                "quotations/inquire-price", "FHKST01010100",
                {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"},
            )
        ).json()["output"]
    # Base 1,325,000 (2014-03-03 close): ±15 % = 1,126,250 / 1,523,750, moved inside the 1,000-won grid.
    assert (output["stck_sdpr"], output["stck_llam"], output["stck_mxpr"]) == ("1325000", "1127000", "1523000")


def test_replay_source_skips_non_stock_files(shared_data):
    source = CsvBarSource(shared_data)
    assert "005930" in source.symbols and not source.knows("kospi")


async def test_replay_unknown_code_quotes_zero_and_orders_get_apbk0656(shared_data, start_sim, connect):
    clock = FixedClock(datetime(2017, 6, 2, 10, 0, tzinfo=KST))
    async with start_sim(clock, data_dir=shared_data) as sim, connect(sim, "real") as real:
        price = await real.get(
            "quotations/inquire-price", "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "123456"}
        )
        order = await real.order("TTTC0802U", "123456", 1)
    assert price.json()["output"]["stck_prpr"] == "0"
    assert order.json()["msg_cd"] == "APBK0656"


async def test_replay_holiday_refuses_orders_with_apbk0918(shared_data, start_sim, connect):
    clock = FixedClock(datetime(2017, 5, 3, 10, 0, tzinfo=KST))  # Buddha's Birthday, a Wednesday
    async with start_sim(clock, data_dir=shared_data) as sim, connect(sim, "real") as real:
        order = await real.order("TTTC0802U", "005930", 1)
        quote = sim.market.quote("005930", clock.now())
    assert order.json()["msg_cd"] == "APBK0918"
    assert quote.day.isoformat() == "2017-05-02" and quote.price == 2_245_000


async def test_replay_fills_stay_inside_the_days_range(shared_data, start_sim, connect):
    clock = FixedClock(datetime(2017, 6, 2, 9, 0, tzinfo=KST))
    async with start_sim(clock, data_dir=shared_data) as sim, connect(sim, "real") as real:
        assert (await real.order("TTTC0802U", "005930", 5)).json()["rt_cd"] == "0"
        clock.advance(timedelta(hours=1))
        sim.exchange.advance_to(clock.now())
        fills = sim.exchange.account(real.account.appkey).fills
    assert sum(f.qty for f in fills) == 5
    assert all(2_250_000 <= f.price <= 2_298_000 for f in fills)
