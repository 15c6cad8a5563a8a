"""Simulator: quotation endpoints (kis-api.md §4.1–4.4) and the shape of their answers."""

from __future__ import annotations

from datetime import date, timedelta

from common.krx import price_limits, tick_size

PRICE_FIELDS = {
    "stck_prpr", "prdy_vrss", "prdy_vrss_sign", "prdy_ctrt", "stck_oprc", "stck_hgpr", "stck_lwpr", "stck_mxpr",
    "stck_llam", "stck_sdpr", "acml_vol", "acml_tr_pbmn", "prdy_vrss_vol_rate", "wghn_avrg_stck_prc", "aspr_unit",
    "hts_deal_qty_unit_val", "stck_shrn_iscd", "rprs_mrkt_kor_name", "bstp_kor_isnm", "iscd_stat_cls_code",
    "temp_stop_yn", "mrkt_warn_cls_code", "mang_issu_cls_code", "invt_caful_yn", "short_over_yn", "sltr_yn",
    "vi_cls_code", "ovtm_vi_cls_code", "marg_rate", "crdt_able_yn", "grmn_rate_cls_code", "ssts_yn", "elw_pblc_yn",
    "per", "pbr", "eps", "bps", "stac_month", "hts_avls", "lstn_stcn", "cpfn", "stck_fcam", "vol_tnrt", "w52_hgpr",
    "w52_hgpr_date", "w52_hgpr_vrss_prpr_ctrt", "w52_lwpr", "w52_lwpr_date", "w52_lwpr_vrss_prpr_ctrt", "d250_hgpr",
    "d250_lwpr", "stck_dryy_hgpr", "hts_frgn_ehrt", "frgn_ntby_qty", "frgn_hldn_qty", "pgtr_ntby_qty",
    "new_hgpr_lwpr_cls_code", "oprc_rang_cont_yn", "clpr_rang_cont_yn", "pvt_scnd_dmrs_prc", "dmrs_val", "dmsp_val",
    "rstc_wdth_prc", "stck_sspr", "whol_loan_rmnd_rate", "fcam_cnnm", "cpfn_cnnm", "apprch_rate",
    "last_ssts_cntg_qty",
}
DAILY_SUMMARY_FIELDS = {
    "prdy_vrss", "prdy_vrss_sign", "prdy_ctrt", "stck_prdy_clpr", "acml_vol", "acml_tr_pbmn", "hts_kor_isnm",
    "stck_prpr", "stck_shrn_iscd", "prdy_vol", "stck_mxpr", "stck_llam", "stck_oprc", "stck_hgpr", "stck_lwpr",
    "stck_prdy_oprc", "stck_prdy_hgpr", "stck_prdy_lwpr", "askp", "bidp", "prdy_vrss_vol", "vol_tnrt", "stck_fcam",
    "lstn_stcn", "cpfn", "hts_avls", "per", "eps", "pbr", "itewhol_loan_rmnd_ratem",
}
DAILY_ROW_FIELDS = {
    "stck_bsop_date", "stck_clpr", "stck_oprc", "stck_hgpr", "stck_lwpr", "acml_vol", "acml_tr_pbmn",
    "flng_cls_code", "prtt_rate", "mod_yn", "prdy_vrss_sign", "prdy_vrss", "revl_issu_reas",
}
MINUTE_ROW_FIELDS = {
    "stck_bsop_date", "stck_cntg_hour", "stck_prpr", "stck_oprc", "stck_hgpr", "stck_lwpr", "cntg_vol", "acml_tr_pbmn",
}


def all_strings(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and all_strings(v) for k, v in value.items())
    if isinstance(value, list):
        return all(all_strings(v) for v in value)
    return isinstance(value, str)


def daily_params(code: str, start: str, end: str, period: str = "D") -> dict[str, str]:
    return {
        "FID_COND_MRKT_DIV_CODE": "J",
        "FID_INPUT_ISCD": code,
        "FID_INPUT_DATE_1": start,
        "FID_INPUT_DATE_2": end,
        "FID_PERIOD_DIV_CODE": period,
        "FID_ORG_ADJ_PRC": "0",
    }


async def test_inquire_price_has_every_documented_field_as_strings(sim, real):
    response = await real.get(
        "quotations/inquire-price", "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
    )
    assert response.status_code == 200
    assert response.headers["tr_id"] == "FHKST01010100"
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert (body["rt_cd"], body["msg_cd"]) == ("0", "MCA00000")
    assert all_strings(body)
    output = body["output"]
    assert set(output) >= PRICE_FIELDS
    quote = sim.market.quote("005930", sim.clock.now())
    assert output["stck_prpr"] == str(quote.price)
    assert output["stck_sdpr"] == str(quote.base)
    lower, upper = price_limits(quote.base, date(2024, 3, 4))
    assert (output["stck_llam"], output["stck_mxpr"]) == (str(lower), str(upper))
    assert output["aspr_unit"] == str(tick_size(quote.price))
    assert int(output["prdy_vrss"]) == quote.price - quote.base
    assert output["prdy_vrss_sign"] in {"1", "2", "3", "4", "5"}


async def test_query_names_are_case_insensitive(sim, real):
    lower = await real.get(
        "quotations/inquire-price", "FHKST01010100", {"fid_cond_mrkt_div_code": "J", "fid_input_iscd": "005930"}
    )
    assert lower.status_code == 200
    assert lower.json()["output"]["stck_shrn_iscd"] == "005930"


async def test_quotes_work_on_the_paper_domain_with_the_same_tr(sim, paper):
    response = await paper.get(
        "quotations/inquire-price", "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "000660"}
    )
    assert response.status_code == 200
    assert int(response.json()["output"]["stck_prpr"]) > 0


async def test_unknown_code_gives_price_zero(sim, real):
    response = await real.get(
        "quotations/inquire-price", "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "ABC"}
    )
    assert response.status_code == 200
    assert response.json()["rt_cd"] == "0"
    assert response.json()["output"]["stck_prpr"] == "0"


async def test_daily_chart_is_newest_first_with_100_rows_per_call_and_pages_by_date(sim, real):
    first = await real.get(
        "quotations/inquire-daily-itemchartprice", "FHKST03010100", daily_params("005930", "20230101", "20240304")
    )
    assert first.status_code == 200
    body = first.json()
    assert all_strings(body)
    assert set(body["output1"]) >= DAILY_SUMMARY_FIELDS
    rows = body["output2"]
    assert len(rows) == 100
    assert first.headers["tr_cont"] == "M"
    assert all(set(row) == DAILY_ROW_FIELDS for row in rows)
    days = [row["stck_bsop_date"] for row in rows]
    assert days == sorted(days, reverse=True)
    assert days[0] == "20240304"  # today's live bar once the session is open
    # Page backwards by moving FID_INPUT_DATE_2 to the day before the oldest row, until tr_cont D.
    collected, response, pages = list(days), first, 1
    while response.headers["tr_cont"] == "M":
        oldest = collected[-1]
        cursor = (date(int(oldest[:4]), int(oldest[4:6]), int(oldest[6:])) - timedelta(days=1)).strftime("%Y%m%d")
        response = await real.get(
            "quotations/inquire-daily-itemchartprice", "FHKST03010100", daily_params("005930", "20230101", cursor)
        )
        page = [row["stck_bsop_date"] for row in response.json()["output2"]]
        assert page and page[0] < collected[-1] and len(page) <= 100
        collected += page
        pages += 1
    weekdays = sum(1 for n in range(429) if (date(2023, 1, 1) + timedelta(days=n)).weekday() < 5)
    assert len(collected) == len(set(collected)) == weekdays  # the synthetic market trades every weekday
    assert pages == 4 and collected[-1] == "20230102"


async def test_daily_bars_are_consistent_ohlc_inside_limits(sim, real):
    rows = (
        await real.get(
            "quotations/inquire-daily-itemchartprice", "FHKST03010100", daily_params("123456", "20240101", "20240301")
        )
    ).json()["output2"]
    closes = {row["stck_bsop_date"]: int(row["stck_clpr"]) for row in rows}
    for row in rows:
        o, h, lo, c = (int(row[k]) for k in ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr"))
        assert lo <= min(o, c) <= max(o, c) <= h
        base = c - int(row["prdy_vrss"])
        lower, upper = price_limits(base, date(2024, 1, 2))
        assert lower <= lo and h <= upper
    assert len(closes) == len(rows)


async def test_weekly_chart_aggregates_days(sim, real):
    weekly = (
        await real.get(
            "quotations/inquire-daily-itemchartprice",
            "FHKST03010100",
            daily_params("005930", "20240101", "20240301", period="W"),
        )
    ).json()["output2"]
    assert 8 <= len(weekly) <= 10


async def test_minute_chart_gives_30_bars_newest_first_up_to_the_hour(sim, real):
    sim.clock.advance(timedelta(hours=1))  # 11:00
    params = {
        "FID_ETC_CLS_CODE": "",
        "FID_COND_MRKT_DIV_CODE": "J",
        "FID_INPUT_ISCD": "005930",
        "FID_INPUT_HOUR_1": "103000",
        "FID_PW_DATA_INCU_YN": "Y",
    }
    response = await real.get("quotations/inquire-time-itemchartprice", "FHKST03010200", params)
    body = response.json()
    assert response.status_code == 200 and body["rt_cd"] == "0"
    rows = body["output2"]
    assert len(rows) == 30
    assert all(set(row) == MINUTE_ROW_FIELDS for row in rows)
    assert rows[0]["stck_cntg_hour"] == "103000"
    assert rows[-1]["stck_cntg_hour"] == "100100"
    assert {"stck_prpr", "hts_kor_isnm", "stck_prdy_clpr"} <= set(body["output1"])
    later = await real.get(
        "quotations/inquire-time-itemchartprice", "FHKST03010200", {**params, "FID_INPUT_HOUR_1": "235959"}
    )
    assert later.json()["output2"][0]["stck_cntg_hour"] == "110000"  # a future hour means now


async def test_order_book_has_ten_levels_around_the_price(sim, real):
    response = await real.get(
        "quotations/inquire-asking-price-exp-ccn",
        "FHKST01010200",
        {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"},
    )
    body = response.json()
    assert all_strings(body)
    book, summary = body["output1"], body["output2"]
    asks = [int(book[f"askp{i}"]) for i in range(1, 11)]
    bids = [int(book[f"bidp{i}"]) for i in range(1, 11)]
    assert asks == sorted(asks) and bids == sorted(bids, reverse=True)
    assert asks[0] > bids[0]
    assert {"aspr_acpt_hour", "askp_rsqn1", "bidp_rsqn10", "total_askp_rsqn", "total_bidp_rsqn",
            "askp_rsqn_icdc1", "ovtm_total_askp_rsqn", "ntby_aspr_rsqn", "new_mkop_cls_code"} <= set(book)
    assert int(book["total_askp_rsqn"]) == sum(int(book[f"askp_rsqn{i}"]) for i in range(1, 11))
    assert {"antc_cnpr", "stck_prpr", "stck_sdpr", "stck_shrn_iscd", "vi_cls_code"} <= set(summary)


async def test_before_the_open_the_price_is_the_base_and_volume_zero(sim, real):
    sim.clock.advance(timedelta(hours=-1, minutes=-30))  # 08:30
    output = (
        await real.get(
            "quotations/inquire-price", "FHKST01010100", {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
        )
    ).json()["output"]
    assert output["stck_prpr"] == output["stck_sdpr"]
    assert output["acml_vol"] == "0"


async def test_invalid_parameter_values_get_opsq2001(sim, real):
    response = await real.get(
        "quotations/inquire-daily-itemchartprice",
        "FHKST03010100",
        daily_params("005930", "20240101", "20240301", period="Q"),
    )
    assert response.status_code == 200
    assert response.json()["msg_cd"] == "OPSQ2001"
    assert response.json()["msg1"] == "ERROR : INPUT INVALID_CHECK_FID_PERIOD_DIV_CODE"
