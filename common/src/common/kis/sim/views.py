"""How the simulator's state looks on the wire: REST outputs and WebSocket records, all strings.

Field names and orders follow kis-api.md §4 (REST) and §5.6–5.8 (WebSocket) exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal

from common.clock import to_kst
from common.kis.sim.exchange import AccountState, Exchange, Notice, Order, Position, Revision, Side
from common.kis.sim.market import DayBar, DayPath, Market, Quote
from common.krx import price_limits, tick_size


def pct(part: float, whole: float) -> str:
    """A percentage with two decimals, as KIS prints rates ("-0.14")."""
    if not whole:
        return "0.00"
    value = Decimal(str(part)) * 100 / Decimal(str(whole))
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def sign_code(price: int, base: int, day: date) -> str:
    """prdy_vrss_sign: 1 upper limit, 2 up, 3 flat, 4 lower limit, 5 down."""
    lower, upper = price_limits(base, day)
    if price >= upper:
        return "1"
    if price <= lower:
        return "4"
    if price > base:
        return "2"
    if price < base:
        return "5"
    return "3"


def hhmmss(at: time) -> str:
    return at.strftime("%H%M%S")


def ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def _extremes(bars: Sequence[DayBar]) -> tuple[DayBar | None, DayBar | None]:
    if not bars:
        return None, None
    return max(bars, key=lambda b: b.high), min(bars, key=lambda b: b.low)


def inquire_price_output(market: Market, quote: Quote) -> dict[str, str]:
    """``output`` of FHKST01010100 (kis-api.md §4.1)."""
    price, base, day = quote.price, quote.base, quote.day
    lower, upper = quote.limits
    history = market.daily_bars(quote.code, day)
    year = [b for b in history if b.day.year == day.year]
    w52_high, w52_low = _extremes([b for b in history if (day - b.day).days < 365])
    d250_high, d250_low = _extremes(list(history[-250:]))
    year_high, year_low = _extremes(year)
    listed = market.listed_shares(quote.code)
    fundamentals = market.fundamentals(quote.code, price)
    prev_volume = quote.path.prev_volume
    pivot = (quote.path.bar.high + quote.path.bar.low + quote.path.bar.close) // 3 if quote.opened else base

    def extreme(prefix: str, bar: DayBar | None, high: bool, rate_suffix: str) -> dict[str, str]:
        value = (bar.high if high else bar.low) if bar else price
        key_price = f"{prefix}_hgpr" if high else f"{prefix}_lwpr"
        return {
            key_price: str(value),
            f"{key_price}_date": ymd(bar.day) if bar else ymd(day),
            f"{key_price}_vrss_prpr_{rate_suffix}": pct(price - value, value),
        }

    output: dict[str, str] = {
        "iscd_stat_cls_code": "55",
        "marg_rate": "20.00",
        "rprs_mrkt_kor_name": "KOSPI200",
        "bstp_kor_isnm": "전기·전자",
        "temp_stop_yn": "N",
        "oprc_rang_cont_yn": "N",
        "clpr_rang_cont_yn": "N",
        "crdt_able_yn": "Y",
        "grmn_rate_cls_code": "40",
        "elw_pblc_yn": "Y",
        "stck_prpr": str(price),
        "prdy_vrss": str(price - base),
        "prdy_vrss_sign": sign_code(price, base, day),
        "prdy_ctrt": pct(price - base, base),
        "acml_tr_pbmn": str(quote.value),
        "acml_vol": str(quote.volume),
        "prdy_vrss_vol_rate": pct(quote.volume, prev_volume),
        "stck_oprc": str(quote.open),
        "stck_hgpr": str(quote.high),
        "stck_lwpr": str(quote.low),
        "stck_mxpr": str(upper),
        "stck_llam": str(lower),
        "stck_sdpr": str(base),
        "wghn_avrg_stck_prc": f"{quote.vwap:.2f}",
        "hts_frgn_ehrt": "50.00",
        "frgn_ntby_qty": "0",
        "pgtr_ntby_qty": "0",
        "pvt_scnd_dmrs_prc": str(pivot + 2 * tick_size(pivot)),
        "pvt_frst_dmrs_prc": str(pivot + tick_size(pivot)),
        "pvt_pont_val": str(pivot),
        "pvt_frst_dmsp_prc": str(max(1, pivot - tick_size(pivot))),
        "pvt_scnd_dmsp_prc": str(max(1, pivot - 2 * tick_size(pivot))),
        "dmrs_val": str(pivot + tick_size(pivot)),
        "dmsp_val": str(max(1, pivot - tick_size(pivot))),
        "cpfn": str(listed * 100 // 100_000_000),
        "rstc_wdth_prc": str(upper - base),
        "stck_fcam": "100",
        "stck_sspr": str(round(price * 0.8)),
        "aspr_unit": str(tick_size(price)),
        "hts_deal_qty_unit_val": "1",
        "lstn_stcn": str(listed),
        "hts_avls": str(listed * price // 100_000_000),
        "per": fundamentals["per"],
        "pbr": fundamentals["pbr"],
        "stac_month": "12",
        "vol_tnrt": pct(quote.volume, listed),
        "eps": fundamentals["eps"],
        "bps": fundamentals["bps"],
        "whol_loan_rmnd_rate": "0.00",
        "ssts_yn": "Y",
        "stck_shrn_iscd": quote.code,
        "fcam_cnnm": "100",
        "cpfn_cnnm": f"{listed * 100 // 100_000_000} 억",
        "frgn_hldn_qty": str(listed // 2),
        "vi_cls_code": "N",
        "ovtm_vi_cls_code": "N",
        "last_ssts_cntg_qty": "0",
        "invt_caful_yn": "N",
        "mrkt_warn_cls_code": "00",
        "short_over_yn": "N",
        "sltr_yn": "N",
        "mang_issu_cls_code": "N",
        "new_hgpr_lwpr_cls_code": "",
        "apprch_rate": "0.00",
    }
    output.update(extreme("w52", w52_high, True, "ctrt"))
    output.update(extreme("w52", w52_low, False, "ctrt"))
    output.update(extreme("d250", d250_high, True, "rate"))
    output.update(extreme("d250", d250_low, False, "rate"))
    year_high_value = year_high.high if year_high else price
    year_low_value = year_low.low if year_low else price
    output.update(
        {
            "stck_dryy_hgpr": str(year_high_value),
            "dryy_hgpr_vrss_prpr_rate": pct(price - year_high_value, year_high_value),
            "dryy_hgpr_date": ymd(year_high.day) if year_high else ymd(day),
            "stck_dryy_lwpr": str(year_low_value),
            "dryy_lwpr_vrss_prpr_rate": pct(price - year_low_value, year_low_value),
            "dryy_lwpr_date": ymd(year_low.day) if year_low else ymd(day),
        }
    )
    return output


UNKNOWN_PRICE_KEYS = ("stck_prpr", "prdy_vrss", "prdy_ctrt", "acml_vol", "acml_tr_pbmn", "stck_oprc", "stck_hgpr")


def unknown_price_output(code: str) -> dict[str, str]:
    """What the real server answers for a code it does not know: zeros (PK raises "not found" on it)."""
    output = {key: "0" for key in UNKNOWN_PRICE_KEYS}
    output.update({"stck_shrn_iscd": code, "prdy_vrss_sign": "3", "stck_lwpr": "0", "stck_mxpr": "0"})
    output.update({"stck_llam": "0", "stck_sdpr": "0", "aspr_unit": "1", "mrkt_warn_cls_code": "00"})
    output.update({"temp_stop_yn": "N", "short_over_yn": "N", "hts_avls": "0", "prdy_vrss_vol_rate": "0.00"})
    return output


def chart_summary(market: Market, quote: Quote, minute: bool = False) -> dict[str, str]:
    """``output1`` of the daily (§4.2) and, reduced, the minute (§4.3) chart."""
    price, base = quote.price, quote.base
    lower, upper = quote.limits
    summary = {
        "prdy_vrss": str(price - base),
        "prdy_vrss_sign": sign_code(price, base, quote.day),
        "prdy_ctrt": pct(price - base, base),
        "stck_prdy_clpr": str(base),
        "acml_vol": str(quote.volume),
        "acml_tr_pbmn": str(quote.value),
        "hts_kor_isnm": quote.name,
        "stck_prpr": str(price),
    }
    if minute:
        return summary
    history = market.daily_bars(quote.code, quote.day)
    previous = history[-2] if len(history) > 1 else None
    asks, bids, _, _ = quote.book()
    listed = market.listed_shares(quote.code)
    fundamentals = market.fundamentals(quote.code, price)
    summary.update(
        {
            "stck_shrn_iscd": quote.code,
            "prdy_vol": str(quote.path.prev_volume),
            "stck_mxpr": str(upper),
            "stck_llam": str(lower),
            "stck_oprc": str(quote.open),
            "stck_hgpr": str(quote.high),
            "stck_lwpr": str(quote.low),
            "stck_prdy_oprc": str(previous.open if previous else 0),
            "stck_prdy_hgpr": str(previous.high if previous else 0),
            "stck_prdy_lwpr": str(previous.low if previous else 0),
            "askp": str(asks[0]),
            "bidp": str(bids[0]),
            "prdy_vrss_vol": str(quote.volume - quote.path.prev_volume),
            "vol_tnrt": pct(quote.volume, listed),
            "stck_fcam": "100",
            "lstn_stcn": str(listed),
            "cpfn": str(listed * 100 // 100_000_000),
            "hts_avls": str(listed * price // 100_000_000),
            "per": fundamentals["per"],
            "eps": fundamentals["eps"],
            "pbr": fundamentals["pbr"],
            "itewhol_loan_rmnd_ratem": "0.00",
        }
    )
    return summary


def daily_row(bar: DayBar, previous_close: int | None, today: Quote | None = None) -> dict[str, str]:
    """One ``output2`` row of the daily chart; ``today`` overrides the bar with the live session."""
    open_, high, low, close = bar.open, bar.high, bar.low, bar.close
    volume, value = bar.volume, (bar.high + bar.low + 2 * bar.close) // 4 * bar.volume
    if today is not None:
        open_, high, low, close = today.open, today.high, today.low, today.price
        volume, value = today.volume, today.value
    base = previous_close if previous_close is not None else bar.open
    return {
        "stck_bsop_date": ymd(bar.day),
        "stck_clpr": str(close),
        "stck_oprc": str(open_),
        "stck_hgpr": str(high),
        "stck_lwpr": str(low),
        "acml_vol": str(volume),
        "acml_tr_pbmn": str(value),
        "flng_cls_code": "00",
        "prtt_rate": "0.00",
        "mod_yn": "N",
        "prdy_vrss_sign": sign_code(close, base, bar.day),
        "prdy_vrss": str(close - base),
        "revl_issu_reas": "",
    }


def minute_row(day: date, bar: tuple[time, int, int, int, int, int, int], cumulative_value: int) -> dict[str, str]:
    start, open_, high, low, close, volume, _ = bar
    return {
        "stck_bsop_date": ymd(day),
        "stck_cntg_hour": hhmmss(start),
        "stck_prpr": str(close),
        "stck_oprc": str(open_),
        "stck_hgpr": str(high),
        "stck_lwpr": str(low),
        "cntg_vol": str(volume),
        "acml_tr_pbmn": str(cumulative_value),
    }


def book_outputs(quote: Quote, now: datetime) -> tuple[dict[str, str], dict[str, str]]:
    """``output1`` and ``output2`` of FHKST01010200 (kis-api.md §4.4)."""
    asks, bids, ask_sizes, bid_sizes = quote.book()
    output1: dict[str, str] = {"aspr_acpt_hour": hhmmss(to_kst(now).time()) if quote.trading_now else "153000"}
    for level in range(10):
        output1[f"askp{level + 1}"] = str(asks[level])
    for level in range(10):
        output1[f"bidp{level + 1}"] = str(bids[level])
    for level in range(10):
        output1[f"askp_rsqn{level + 1}"] = str(ask_sizes[level])
    for level in range(10):
        output1[f"bidp_rsqn{level + 1}"] = str(bid_sizes[level])
    for level in range(10):
        output1[f"askp_rsqn_icdc{level + 1}"] = "0"
    for level in range(10):
        output1[f"bidp_rsqn_icdc{level + 1}"] = "0"
    output1.update(
        {
            "total_askp_rsqn": str(sum(ask_sizes)),
            "total_bidp_rsqn": str(sum(bid_sizes)),
            "total_askp_rsqn_icdc": "0",
            "total_bidp_rsqn_icdc": "0",
            "ovtm_total_askp_icdc": "0",
            "ovtm_total_bidp_icdc": "0",
            "ovtm_total_askp_rsqn": "0",
            "ovtm_total_bidp_rsqn": "0",
            "ntby_aspr_rsqn": str(sum(bid_sizes) - sum(ask_sizes)),
            "new_mkop_cls_code": "20" if quote.trading_now else "00",
        }
    )
    price, base = quote.price, quote.base
    output2 = {
        "antc_mkop_cls_code": "311" if quote.trading_now else "112",
        "stck_prpr": str(price),
        "stck_oprc": str(quote.open),
        "stck_hgpr": str(quote.high),
        "stck_lwpr": str(quote.low),
        "stck_sdpr": str(base),
        "antc_cnpr": "0",
        "antc_cntg_vrss_sign": "3",
        "antc_cntg_vrss": "0",
        "antc_cntg_prdy_ctrt": "0.00",
        "antc_vol": "0",
        "stck_shrn_iscd": quote.code,
        "vi_cls_code": "N",
    }
    return output1, output2


# -- WebSocket records ------------------------------------------------------------------------------


def trade_record(market: Market, path: DayPath, index: int) -> list[str]:
    """One H0STCNT0 record: 46 fields (kis-api.md §5.6)."""
    quote = market.at_index(path.code, path, index)
    price, base, day = quote.price, quote.base, quote.day
    asks, bids, ask_sizes, bid_sizes = quote.book()
    volume = quote.volume
    buy_volume = path.cum_buy_volume[index]
    sell_volume = volume - buy_volume
    buys, sells = path.cum_buy_count[index], path.cum_sell_count[index]
    open_, high, low = quote.open, quote.high, quote.low
    elapsed = (index + 1) / path.count
    prev_same_time = int(path.prev_volume * elapsed)
    fields = [
        path.code,
        hhmmss(path.tick_time(index)),
        str(price),
        sign_code(price, base, day),
        str(price - base),
        pct(price - base, base),
        f"{quote.vwap:.2f}",
        str(open_),
        str(high),
        str(low),
        str(asks[0]),
        str(bids[0]),
        str(path.volumes[index]),
        str(volume),
        str(quote.value),
        str(sells),
        str(buys),
        str(buys - sells),
        pct(buy_volume, sell_volume) if sell_volume else "100.00",
        str(sell_volume),
        str(buy_volume),
        "1" if path.buy_side[index] else "5",
        pct(buy_volume, volume),
        pct(volume, path.prev_volume),
        hhmmss(path.tick_time(0)),
        sign_code(price, open_, day) if price != open_ else "3",
        str(price - open_),
        hhmmss(path.tick_time(path.high_at[index])),
        "2" if price > high else ("5" if price < high else "3"),
        str(price - high),
        hhmmss(path.tick_time(path.low_at[index])),
        "2" if price > low else ("5" if price < low else "3"),
        str(price - low),
        ymd(day),
        "20",
        "N",
        str(ask_sizes[0]),
        str(bid_sizes[0]),
        str(sum(ask_sizes)),
        str(sum(bid_sizes)),
        pct(volume, market.listed_shares(path.code)),
        str(prev_same_time),
        pct(volume, prev_same_time),
        "0",
        "",
        str(base),
    ]
    assert len(fields) == TRADE_FIELDS
    return fields


TRADE_FIELDS = 46
BOOK_FIELDS = 59


def book_record(quote: Quote) -> list[str]:
    """One H0STASP0 record: 59 fields (kis-api.md §5.7)."""
    asks, bids, ask_sizes, bid_sizes = quote.book()
    fields = [quote.code, hhmmss(quote.time), "0"]
    fields += [str(p) for p in asks] + [str(p) for p in bids]
    fields += [str(q) for q in ask_sizes] + [str(q) for q in bid_sizes]
    fields += [str(sum(ask_sizes)), str(sum(bid_sizes)), "0", "0"]
    fields += ["0", "0", "0", "0", "3", "0.00", str(quote.volume), "0", "0", "0", "0", ""]
    assert len(fields) == BOOK_FIELDS
    return fields


def notice_record(notice: Notice, layout: int) -> list[str]:
    """One H0STCNI0/H0STCNI9 record: the live 26-field layout or the legacy 23-field one (§5.8)."""
    order, account = notice.order, notice.account
    config = account.config
    head = [
        config.hts_id,
        config.account_no,
        order.odno,
        order.original_odno,
        order.side.value,
        order.revision.value,
        order.division,
        "0",
        order.code,
        str(notice.qty),
        str(notice.price),
        hhmmss(to_kst(notice.at).time()),
        "0",
        "2" if notice.filled else "1",
        "2" if notice.filled or order.revision is not Revision.NEW else "1",
        order.orgno,
        str(order.qty),
        config.name,
    ]
    if layout == 23:
        tail = [order.name, "10", "", order.name, str(order.price)]
    else:
        tail = ["0", "1", "N", "", "10", "", order.name, str(order.price)]
    return head + tail


# -- account views -------------------------------------------------------------------------------


def holding_row(exchange: Exchange, account: AccountState, position: Position, now: datetime) -> dict[str, str]:
    """One ``output1`` row of inquire-balance (kis-api.md §4.7)."""
    quote = exchange.market.quote(position.code, now)
    price = quote.price if quote else 0
    base = quote.base if quote else price
    today = to_kst(now).date()
    today_fills = [f for f in account.fills_on(today) if f.order.code == position.code]
    evaluation = position.qty * price
    return {
        "pdno": position.code,
        "prdt_name": position.name,
        "trad_dvsn_name": "현금",
        "bfdy_buy_qty": "0",
        "bfdy_sll_qty": "0",
        "thdt_buyqty": str(sum(f.qty for f in today_fills if f.order.side is Side.BUY)),
        "thdt_sll_qty": str(sum(f.qty for f in today_fills if f.order.side is Side.SELL)),
        "hldg_qty": str(position.qty),
        "ord_psbl_qty": str(max(0, account.sellable(position.code))),
        "pchs_avg_pric": f"{position.average_price:.4f}",
        "pchs_amt": str(position.cost),
        "prpr": str(price),
        "evlu_amt": str(evaluation),
        "evlu_pfls_amt": str(evaluation - position.cost),
        "evlu_pfls_rt": pct(evaluation - position.cost, position.cost),
        "evlu_erng_rt": "0.00000000",
        "loan_dt": "",
        "loan_amt": "0",
        "stln_slng_chgs": "0",
        "expd_dt": "",
        "fltt_rt": pct(price - base, base),
        "bfdy_cprs_icdc": str(price - base),
        "item_mgna_rt_name": "20%",
        "grta_rt_name": "",
        "sbst_pric": str(price * 7 // 10),
        "stck_loan_unpr": "0",
    }


def balance_summary(exchange: Exchange, account: AccountState, now: datetime) -> dict[str, str]:
    """The one element of ``output2`` of inquire-balance (kis-api.md §4.7)."""
    today = to_kst(now).date()
    positions = exchange.held_positions(account, today)
    purchase = evaluation = change = 0
    for position in positions:
        quote = exchange.market.quote(position.code, now)
        price = quote.price if quote else 0
        purchase += position.cost
        evaluation += position.qty * price
        change += position.qty * (price - (quote.base if quote else price))
    fills = account.fills_on(today)
    bought = sum(f.gross for f in fills if f.order.side is Side.BUY)
    sold = sum(f.gross for f in fills if f.order.side is Side.SELL)
    fees = _fees_on(account, today)
    total = account.cash + evaluation
    previous_total = total - change
    return {
        "dnca_tot_amt": str(account.cash),
        "nxdy_excc_amt": str(account.cash),
        "prvs_rcdl_excc_amt": str(account.cash),
        "cma_evlu_amt": "0",
        "bfdy_buy_amt": "0",
        "thdt_buy_amt": str(bought),
        "nxdy_auto_rdpt_amt": "0",
        "bfdy_sll_amt": "0",
        "thdt_sll_amt": str(sold),
        "d2_auto_rdpt_amt": "0",
        "bfdy_tlex_amt": "0",
        "thdt_tlex_amt": str(fees),
        "tot_loan_amt": "0",
        "scts_evlu_amt": str(evaluation),
        "tot_evlu_amt": str(total),
        "nass_amt": str(total),
        "fncg_gld_auto_rdpt_yn": "N",
        "pchs_amt_smtl_amt": str(purchase),
        "evlu_amt_smtl_amt": str(evaluation),
        "evlu_pfls_smtl_amt": str(evaluation - purchase),
        "tot_stln_slng_chgs": "0",
        "bfdy_tot_asst_evlu_amt": str(previous_total),
        "asst_icdc_amt": str(change),
        "asst_icdc_erng_rt": pct(change, previous_total),
    }


def _fees_on(account: AccountState, day: date) -> int:
    """Commission and tax of orders placed on ``day``."""
    return sum(o.commission + o.tax for o in account.orders if o.day == day)


def order_row(order: Order) -> dict[str, str]:
    """One ``output1`` row of inquire-daily-ccld (kis-api.md §4.8)."""
    cancelled = order.revision is Revision.CANCEL
    return {
        "ord_dt": ymd(order.day),
        "ord_gno_brno": order.orgno,
        "odno": order.odno,
        "orgn_odno": order.original_odno,
        "ord_dvsn_name": {"00": "지정가", "01": "시장가"}.get(order.division, order.division),
        "sll_buy_dvsn_cd": order.side.value,
        "sll_buy_dvsn_cd_name": ("현금" + order.side.label) if not cancelled else f"{order.side.label}취소",
        "pdno": order.code,
        "prdt_name": order.name,
        "ord_qty": str(order.qty),
        "ord_unpr": str(order.price),
        "ord_tmd": hhmmss(to_kst(order.accepted_at).time()),
        "tot_ccld_qty": str(order.filled_qty),
        "avg_prvs": str(round(order.average_price)),
        "cncl_yn": "Y" if cancelled else "N",
        "tot_ccld_amt": str(order.filled_value),
        "loan_dt": "",
        "ordr_empno": "OpnAPI",
        "ord_dvsn_cd": order.division,
        "cncl_cfrm_qty": str(order.qty if cancelled else 0),
        "rmn_qty": str(order.unfilled),
        "rjct_qty": "0",
        "ccld_cndt_name": "없음",
        "inqr_ip_addr": "127.0.0.1",
        "cpbc_ordp_ord_rcit_dvsn_cd": "",
        "cpbc_ordp_infm_mthd_dvsn_cd": "",
        "infm_tmd": "",
        "ctac_tlno": "",
        "prdt_type_cd": "300",
        "excg_dvsn_cd": "02",
        "cpbc_ordp_mtrl_dvsn_cd": "",
        "ord_orgno": order.orgno,
        "rsvn_ord_end_dt": "",
        "excg_id_dvsn_Cd": "KRX",
        "stpm_cndt_pric": "0",
        "stpm_efct_occr_dtmd": "",
    }


def orders_summary(orders: Sequence[Order]) -> dict[str, str]:
    """``output2`` (an object) of inquire-daily-ccld."""
    live = [o for o in orders if o.revision is not Revision.CANCEL]
    filled_qty = sum(o.filled_qty for o in live)
    filled_value = sum(o.filled_value for o in live)
    buys = [o for o in live if o.side is Side.BUY and o.filled_qty]
    bought_qty = sum(o.filled_qty for o in buys)
    return {
        "tot_ord_qty": str(sum(o.qty for o in live)),
        "tot_ccld_qty": str(filled_qty),
        "tot_ccld_amt": str(filled_value),
        "prsm_tlex_smtl": str(sum(o.commission + o.tax for o in live)),
        "pchs_avg_pric": f"{(sum(o.filled_value for o in buys) / bought_qty) if bought_qty else 0:.4f}",
    }

