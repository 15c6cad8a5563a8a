"""Simulator: orders, matching with KRX rules, balances and order lists (kis-api.md §4.5–4.9, §6.2–6.3)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

from common.clock import to_kst
from common.krx import price_limits, tick_size

TODAY = date(2024, 3, 4)
CODE = "005930"
TICK = timedelta(seconds=10)


def floor_won(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def hand_commission(gross: int) -> int:
    return floor_won(Decimal(gross) * Decimal("0.00015"))  # 0.015 %


def hand_sell_tax_2024(gross: int) -> int:
    return floor_won(Decimal(gross) * Decimal("0.0018"))  # 0.18 % in 2024


def path_and_index(sim, code: str = CODE):
    path = sim.market.path(code, TODAY)
    return path, sim.market.tick_index(path, sim.clock.now())


def next_traded_tick(path, after: int) -> int:
    index = after + 1
    while path.volumes[index] == 0:
        index += 1
    return index


async def test_market_buy_fills_at_the_next_tick_with_commission(sim, real):
    path, now_index = path_and_index(sim)
    response = await real.order("TTTC0012U", CODE, 10)
    body = response.json()
    assert response.status_code == 200
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("0", "APBK0013", "주문 전송 완료 되었습니다.")
    output = body["output"]
    assert set(output) == {"KRX_FWDG_ORD_ORGNO", "ODNO", "ORD_TMD"}
    assert len(output["ODNO"]) == 10 and output["ODNO"].isdigit() and output["ODNO"].startswith("0")
    assert output["ORD_TMD"] == "100000"
    account = sim.exchange.account(real.account.appkey)
    assert account.fills == []  # nothing trades until the next tick
    fill_index = next_traded_tick(path, now_index)
    sim.clock.advance(TICK * (fill_index - now_index))
    sim.exchange.advance_to(sim.clock.now())
    assert [(f.qty, f.price) for f in account.fills] == [(min(10, path.volumes[fill_index]), path.prices[fill_index])]
    sim.clock.advance(TICK * 60)
    sim.exchange.advance_to(sim.clock.now())
    assert sum(f.qty for f in account.fills) == 10
    tick_at = {path.tick_time(i): i for i in range(path.count)}
    for fill in account.fills:
        assert fill.price == path.prices[tick_at[to_kst(fill.at).time()]]
    gross = sum(f.gross for f in account.fills)
    assert account.cash == 100_000_000 - gross - hand_commission(gross)


async def test_old_and_new_order_trs_are_both_accepted(sim, real, paper):
    for tr_id in ("TTTC0802U", "TTTC0012U"):
        assert (await real.order(tr_id, CODE, 1)).json()["rt_cd"] == "0"
    for tr_id in ("VTTC0802U", "VTTC0012U"):
        body = (await paper.order(tr_id, CODE, 1)).json()
        assert (body["rt_cd"], body["msg_cd"]) == ("0", "40600000")
        assert body["output"]["KRX_FWDG_ORD_ORGNO"] == "00950"


async def test_limit_buy_waits_for_the_price_and_fills_at_the_tick_price(sim, real):
    path, now_index = path_and_index(sim)
    rest_of_day = path.prices[now_index + 1 :]
    limit = min(rest_of_day)
    first_touch = next(i for i in range(now_index + 1, path.count) if path.prices[i] <= limit and path.volumes[i])
    response = await real.order("TTTC0802U", CODE, 3, price=limit, division="00")
    assert response.json()["rt_cd"] == "0"
    account = sim.exchange.account(real.account.appkey)
    sim.clock.advance(TICK * (first_touch - now_index - 1))
    sim.exchange.advance_to(sim.clock.now())
    assert account.fills == []
    sim.clock.advance(TICK)
    sim.exchange.advance_to(sim.clock.now())
    assert sum(f.qty for f in account.fills) == min(3, path.volumes[first_touch])
    assert all(f.price == path.prices[first_touch] <= limit for f in account.fills)


async def test_order_larger_than_tick_volume_fills_partially(sim, real):
    path, now_index = path_and_index(sim)
    first = next_traded_tick(path, now_index)
    qty = path.volumes[first] + 7
    await real.order("TTTC0802U", CODE, qty)
    sim.clock.advance(TICK * (first - now_index))
    response = await real.daily_ccld("TTTC8001R", "20240304")
    row = response.json()["output1"][0]
    assert row["tot_ccld_qty"] == str(path.volumes[first])
    assert row["rmn_qty"] == "7"
    assert row["ord_qty"] == str(qty)
    sim.clock.advance(TICK * 30)
    row = (await real.daily_ccld("TTTC8001R", "20240304")).json()["output1"][0]
    assert row["tot_ccld_qty"] == str(qty) and row["rmn_qty"] == "0"


async def test_sell_pays_commission_and_2024_sell_tax(sim, real):
    path, now_index = path_and_index(sim)
    await real.order("TTTC0802U", CODE, 20)
    buy_tick = next_traded_tick(path, now_index)
    sim.clock.advance(TICK * (buy_tick - now_index + 20))
    account = sim.exchange.account(real.account.appkey)
    sim.exchange.advance_to(sim.clock.now())
    assert sum(f.qty for f in account.fills) == 20
    buy_gross = sum(f.gross for f in account.fills)
    response = await real.order("TTTC0801U", CODE, 20)
    assert response.json()["rt_cd"] == "0"
    sim.clock.advance(TICK * 60)
    sim.exchange.advance_to(sim.clock.now())
    sells = [f for f in account.fills if f.order.side.value == "01"]
    assert sum(f.qty for f in sells) == 20
    sell_gross = sum(f.gross for f in sells)
    expected = (
        100_000_000
        - buy_gross
        - hand_commission(buy_gross)
        + sell_gross
        - hand_commission(sell_gross)
        - hand_sell_tax_2024(sell_gross)
    )
    assert account.cash == expected
    assert account.positions[CODE].qty == 0
    # A literal example of the same arithmetic: 20 shares at 66,300 won.
    assert hand_commission(1_326_000) == 198 and hand_sell_tax_2024(1_326_000) == 2386
    balance = (await real.balance("TTTC8434R")).json()
    holding = balance["output1"][0]
    assert holding["hldg_qty"] == "0"  # sold today: still listed until settlement
    summary = balance["output2"][0]
    fees = hand_commission(buy_gross) + hand_commission(sell_gross) + hand_sell_tax_2024(sell_gross)
    assert summary["thdt_tlex_amt"] == str(fees)
    assert summary["dnca_tot_amt"] == str(expected)


async def test_off_tick_price_gets_apbk0506(sim, real, paper):
    quote = sim.market.quote(CODE, sim.clock.now())
    off = quote.price - tick_size(quote.price) // 2
    body = (await real.order("TTTC0802U", CODE, 1, price=off, division="00")).json()
    assert (body["rt_cd"], body["msg_cd"]) == ("1", "APBK0506")
    paper_body = (await paper.order("VTTC0802U", CODE, 1, price=off, division="00")).json()
    assert paper_body["msg1"] == "모의투자 주문처리가 안되었습니다(호가단위 오류)"


async def test_price_outside_daily_limits_is_refused(sim, real):
    quote = sim.market.quote(CODE, sim.clock.now())
    _, upper = price_limits(quote.base, TODAY)
    over = upper + tick_size(upper)
    body = (await real.order("TTTC0802U", CODE, 1, price=over, division="00")).json()
    assert body["rt_cd"] == "1" and body["msg_cd"] == "APBK0517"


async def test_orders_outside_session_hours_get_apbk0919_and_weekends_apbk0918(sim, real, paper):
    sim.clock.advance(timedelta(hours=-2))  # 08:00
    assert (await real.order("TTTC0802U", CODE, 1)).json()["msg_cd"] == "APBK0919"
    sim.clock.advance(timedelta(hours=7, minutes=30))  # 15:30, the close
    body = (await paper.order("VTTC0802U", CODE, 1)).json()
    assert (body["msg_cd"], body["msg1"]) == ("APBK0919", "모의투자 장종료 입니다.")
    sim.clock.advance(timedelta(days=5))  # Saturday
    await real.login()  # the morning's token has expired by now
    assert (await real.order("TTTC0802U", CODE, 1)).json()["msg_cd"] == "APBK0918"


async def test_buy_beyond_cash_is_refused_and_cash_never_goes_negative(sim, real, paper):
    quote = sim.market.quote(CODE, sim.clock.now())
    too_many = 100_000_000 // quote.price + 1
    body = (await real.order("TTTC0802U", CODE, too_many, price=quote.price, division="00")).json()
    assert (body["rt_cd"], body["msg_cd"]) == ("1", "APBK0952")
    paper_body = (await paper.order("VTTC0802U", CODE, too_many, price=quote.price, division="00")).json()
    assert paper_body["msg1"] == "모의투자 주문가능금액이 부족합니다."
    # A market buy reserves at the upper limit, so the largest one that fits cannot overspend.
    _, upper = price_limits(quote.base, TODAY)
    fits = 100_000_000 // (upper + upper * 15 // 100_000 + 1)
    assert (await real.order("TTTC0802U", CODE, fits)).json()["rt_cd"] == "0"
    sim.clock.advance(timedelta(hours=5))
    sim.exchange.advance_to(sim.clock.now())
    assert sim.exchange.account(real.account.appkey).cash >= 0


async def test_selling_more_than_held_is_refused(sim, real):
    body = (await real.order("TTTC0801U", CODE, 1)).json()
    assert (body["rt_cd"], body["msg_cd"]) == ("1", "APBK0400")


async def test_unknown_symbol_gets_apbk0656(sim, real):
    body = (await real.order("TTTC0802U", "12345", 1)).json()
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("1", "APBK0656", "해당종목정보가 없습니다")


async def test_order_for_another_account_gets_opsq2000(sim, real):
    body = {"CANO": "99999999", "ACNT_PRDT_CD": "01", "PDNO": CODE, "ORD_DVSN": "01", "ORD_QTY": "1", "ORD_UNPR": "0"}
    response = await real.post("trading/order-cash", "TTTC0802U", body)
    assert response.json()["msg_cd"] == "OPSQ2000"


async def test_cancel_releases_the_reservation_and_lists_a_cancel_record(sim, real):
    quote = sim.market.quote(CODE, sim.clock.now())
    lower, _ = price_limits(quote.base, TODAY)
    account = sim.exchange.account(real.account.appkey)
    placed = (await real.order("TTTC0802U", CODE, 10, price=lower, division="00")).json()["output"]
    assert account.orderable_cash == 100_000_000 - 10 * lower - hand_commission(10 * lower)
    cancel = {
        "CANO": real.account.cano,
        "ACNT_PRDT_CD": "01",
        "KRX_FWDG_ORD_ORGNO": placed["KRX_FWDG_ORD_ORGNO"],
        "ORGN_ODNO": placed["ODNO"],
        "ORD_DVSN": "00",
        "RVSE_CNCL_DVSN_CD": "02",
        "ORD_QTY": "0",
        "ORD_UNPR": "0",
        "QTY_ALL_ORD_YN": "Y",
    }
    response = (await real.post("trading/order-rvsecncl", "TTTC0803U", cancel)).json()
    assert response["rt_cd"] == "0"
    assert response["output"]["ODNO"] != placed["ODNO"] and len(response["output"]["ODNO"]) == 10
    assert account.orderable_cash == 100_000_000
    rows = (await real.daily_ccld("TTTC0081R", "20240304")).json()["output1"]
    by_odno = {row["odno"]: row for row in rows}
    assert by_odno[response["output"]["ODNO"]]["cncl_yn"] == "Y"
    assert by_odno[response["output"]["ODNO"]]["orgn_odno"] == placed["ODNO"]
    assert by_odno[placed["ODNO"]]["rmn_qty"] == "0"
    again = (await real.post("trading/order-rvsecncl", "TTTC0013U", cancel)).json()
    assert (again["rt_cd"], again["msg_cd"]) == ("7", "APBK1359")


async def test_partial_cancel_of_more_than_remaining_gets_apbk1359(sim, real):
    quote = sim.market.quote(CODE, sim.clock.now())
    lower, _ = price_limits(quote.base, TODAY)
    placed = (await real.order("TTTC0802U", CODE, 5, price=lower, division="00")).json()["output"]
    cancel = {
        "CANO": real.account.cano, "ACNT_PRDT_CD": "01", "KRX_FWDG_ORD_ORGNO": placed["KRX_FWDG_ORD_ORGNO"],
        "ORGN_ODNO": placed["ODNO"], "ORD_DVSN": "00", "RVSE_CNCL_DVSN_CD": "02", "ORD_QTY": "6",
        "ORD_UNPR": "0", "QTY_ALL_ORD_YN": "N",
    }
    body = (await real.post("trading/order-rvsecncl", "TTTC0803U", cancel)).json()
    assert (body["rt_cd"], body["msg_cd"]) == ("7", "APBK1359")
    cancel["ORD_QTY"] = "2"
    assert (await real.post("trading/order-rvsecncl", "TTTC0803U", cancel)).json()["rt_cd"] == "0"
    assert sim.exchange.account(real.account.appkey).find_order(placed["ODNO"]).remaining == 3


async def test_modify_to_a_marketable_price_fills(sim, real):
    quote = sim.market.quote(CODE, sim.clock.now())
    lower, upper = price_limits(quote.base, TODAY)
    placed = (await real.order("TTTC0802U", CODE, 2, price=lower, division="00")).json()["output"]
    modify = {
        "CANO": real.account.cano, "ACNT_PRDT_CD": "01", "KRX_FWDG_ORD_ORGNO": placed["KRX_FWDG_ORD_ORGNO"],
        "ORGN_ODNO": placed["ODNO"], "ORD_DVSN": "00", "RVSE_CNCL_DVSN_CD": "01", "ORD_QTY": "0",
        "ORD_UNPR": str(upper), "QTY_ALL_ORD_YN": "Y",
    }
    body = (await real.post("trading/order-rvsecncl", "TTTC0803U", modify)).json()
    assert body["rt_cd"] == "0"
    sim.clock.advance(TICK * 30)
    sim.exchange.advance_to(sim.clock.now())
    account = sim.exchange.account(real.account.appkey)
    assert sum(f.qty for f in account.fills) == 2
    assert all(f.order.odno == body["output"]["ODNO"] for f in account.fills)


async def test_unfilled_day_orders_expire_at_the_close(sim, real):
    quote = sim.market.quote(CODE, sim.clock.now())
    lower, _ = price_limits(quote.base, TODAY)
    await real.order("TTTC0802U", CODE, 10, price=lower, division="00")
    sim.clock.advance(timedelta(hours=5, minutes=30))  # 15:30
    sim.exchange.advance_to(sim.clock.now())
    account = sim.exchange.account(real.account.appkey)
    assert account.orderable_cash == 100_000_000
    assert not any(order.open for order in account.orders)


async def test_balance_pages_20_rows_on_paper_with_tr_cont_m_then_d(sim, paper):
    codes = [f"{100000 + n * 1117:06d}" for n in range(25)]
    for code in codes:
        assert (await paper.order("VTTC0012U", code, 1)).json()["rt_cd"] == "0"
    sim.clock.advance(timedelta(minutes=30))
    first = await paper.balance("VTTC8434R")
    body = first.json()
    assert first.headers["tr_cont"] == "M"
    assert body["msg_cd"] == "KIOK0500"
    assert len(body["output1"]) == 20
    assert isinstance(body["output2"], list) and len(body["output2"]) == 1
    assert len(body["ctx_area_fk100"]) == 100 and len(body["ctx_area_nk100"]) == 100
    second = await paper.balance("VTTC8434R", "N", body["ctx_area_fk100"], body["ctx_area_nk100"])
    assert second.headers["tr_cont"] == "D"
    rest = second.json()
    assert rest["msg_cd"] == "KIOK0510"
    assert len(rest["output1"]) == 5
    assert {row["pdno"] for row in body["output1"] + rest["output1"]} == set(codes)
    assert rest["ctx_area_nk100"].strip() == ""


async def test_balance_rejects_inqr_dvsn_02(sim, real):
    params = {
        "CANO": real.account.cano, "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "", "INQR_DVSN": "02",
        "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N", "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00",
        "CTX_AREA_FK100": "", "CTX_AREA_NK100": "",
    }
    body = (await real.get("trading/inquire-balance", "TTTC8434R", params)).json()
    assert (body["rt_cd"], body["msg_cd"], body["msg1"]) == ("1", "OPSQ2001", "ERROR : INPUT INVALID_CHECK_INQR_DVSN")


async def test_balance_values_are_strings_with_lowercase_names(sim, real):
    await real.order("TTTC0802U", CODE, 5)
    sim.clock.advance(timedelta(minutes=5))
    response = await real.balance("TTTC8434R")
    body = response.json()
    assert response.headers["tr_cont"] == "D"
    row = body["output1"][0]
    expected_row = {
        "pdno", "prdt_name", "trad_dvsn_name", "bfdy_buy_qty", "bfdy_sll_qty", "thdt_buyqty", "thdt_sll_qty",
        "hldg_qty", "ord_psbl_qty", "pchs_avg_pric", "pchs_amt", "prpr", "evlu_amt", "evlu_pfls_amt",
        "evlu_pfls_rt", "evlu_erng_rt", "loan_dt", "loan_amt", "stln_slng_chgs", "expd_dt", "fltt_rt",
        "bfdy_cprs_icdc", "item_mgna_rt_name", "grta_rt_name", "sbst_pric", "stck_loan_unpr",
    }
    assert set(row) == expected_row
    assert all(isinstance(v, str) for v in row.values())
    summary = body["output2"][0]
    assert {"dnca_tot_amt", "nxdy_excc_amt", "prvs_rcdl_excc_amt", "scts_evlu_amt", "tot_evlu_amt", "nass_amt",
            "pchs_amt_smtl_amt", "evlu_amt_smtl_amt", "evlu_pfls_smtl_amt", "thdt_buy_amt", "thdt_tlex_amt",
            "bfdy_tot_asst_evlu_amt", "asst_icdc_amt", "asst_icdc_erng_rt"} <= set(summary)
    assert int(summary["tot_evlu_amt"]) == int(summary["dnca_tot_amt"]) + int(summary["scts_evlu_amt"])
    assert row["hldg_qty"] == "5" and int(row["evlu_amt"]) == 5 * int(row["prpr"])


async def test_daily_ccld_pages_15_rows_on_paper_and_has_object_output2(sim, paper):
    for _ in range(25):
        assert (await paper.order("VTTC0802U", CODE, 1)).json()["rt_cd"] == "0"
    first = await paper.daily_ccld("VTTC0081R", "20240304")
    body = first.json()
    assert first.headers["tr_cont"] == "M"
    assert len(body["output1"]) == 15
    assert isinstance(body["output2"], dict)
    assert body["output2"]["tot_ord_qty"] == "25"
    row = body["output1"][0]
    assert {"ord_dt", "ord_gno_brno", "odno", "orgn_odno", "ord_dvsn_name", "sll_buy_dvsn_cd", "pdno", "prdt_name",
            "ord_qty", "ord_unpr", "ord_tmd", "tot_ccld_qty", "avg_prvs", "cncl_yn", "tot_ccld_amt", "rmn_qty",
            "rjct_qty", "excg_id_dvsn_Cd", "ord_dvsn_cd", "cncl_cfrm_qty", "infm_tmd"} <= set(row)
    second = await paper.daily_ccld(
        "VTTC8001R", "20240304", "N", body["ctx_area_fk100"], body["ctx_area_nk100"]
    )
    assert second.headers["tr_cont"] == "D"
    assert len(second.json()["output1"]) == 10
    odnos = [r["odno"] for r in body["output1"] + second.json()["output1"]]
    assert odnos == sorted(odnos, reverse=True)  # INQR_DVSN 00: newest first


async def test_psbl_order_reports_cash_and_the_largest_buy(sim, real):
    quote = sim.market.quote(CODE, sim.clock.now())
    params = {
        "CANO": real.account.cano, "ACNT_PRDT_CD": "01", "PDNO": CODE, "ORD_UNPR": str(quote.price),
        "ORD_DVSN": "00", "CMA_EVLU_AMT_ICLD_YN": "N", "OVRS_ICLD_YN": "N",
    }
    output = (await real.get("trading/inquire-psbl-order", "TTTC8908R", params)).json()["output"]
    assert output["ord_psbl_cash"] == "100000000"
    qty = int(output["max_buy_qty"])
    assert qty * quote.price + hand_commission(qty * quote.price) <= 100_000_000
    assert (qty + 1) * quote.price + hand_commission((qty + 1) * quote.price) > 100_000_000
    assert {"nrcvb_buy_amt", "nrcvb_buy_qty", "max_buy_amt", "psbl_qty_calc_unpr", "ruse_psbl_amt"} <= set(output)
