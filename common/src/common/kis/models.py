"""Typed REST results (kis-api.md §4): KIS strings become int KRW, Decimal rates, dates, KST times.

Field aliases are the KIS names, so ``Model.model_validate(output)`` reads a KIS object directly.
Blank numeric strings read as 0 (or ``None`` where a blank means "not applicable"); blank dates
read as ``None``. ``raw`` keeps the untouched object for fields without a typed attribute.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from common.clock import KST

Side = Literal["buy", "sell"]


def parse_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    text = str(value if value is not None else "").strip().replace(",", "")
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        try:
            return int(Decimal(text))
        except InvalidOperation as exc:
            raise ValueError(f"not a number: {text!r}") from exc


def parse_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    text = str(value if value is not None else "").strip().replace(",", "")
    if not text:
        return Decimal(0)
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc


def parse_optional_decimal(value: Any) -> Decimal | None:
    text = str(value if value is not None else "").strip()
    return parse_decimal(text) if text else None


def parse_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    text = str(value if value is not None else "").strip()
    if not text or text == "00000000":
        return None
    return datetime.strptime(text, "%Y%m%d").date()


def parse_time(value: Any) -> time | None:
    if isinstance(value, time):
        return value
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    text = text.zfill(6)[:6]
    return time(int(text[0:2]) % 24, int(text[2:4]), int(text[4:6]))


def parse_yn(value: Any) -> bool:
    return str(value if value is not None else "").strip().upper() == "Y"


def kst_datetime_of(day: date | None, at: time | None) -> datetime | None:
    """The KST-aware instant of a KIS date + time pair."""
    if day is None or at is None:
        return None
    return datetime.combine(day, at, tzinfo=KST)


KisInt = Annotated[int, BeforeValidator(parse_int)]
KisDecimal = Annotated[Decimal, BeforeValidator(parse_decimal)]
KisOptDecimal = Annotated[Decimal | None, BeforeValidator(parse_optional_decimal)]
KisDate = Annotated[date | None, BeforeValidator(parse_date)]
KisTime = Annotated[time | None, BeforeValidator(parse_time)]
KisFlag = Annotated[bool, BeforeValidator(parse_yn)]
KisStr = Annotated[str, BeforeValidator(lambda v: str(v if v is not None else "").strip())]


class KisModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class RawKisModel(KisModel):
    """A model that also keeps the KIS object it was read from."""

    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, data: Any) -> Any:
        if isinstance(data, dict) and "raw" not in data:
            return {**data, "raw": dict(data)}
        return data


# --- quotations ---------------------------------------------------------------------------


class Quote(RawKisModel):
    """inquire-price (FHKST01010100) ``output``."""

    symbol: KisStr = Field(alias="stck_shrn_iscd", default="")
    price: KisInt = Field(alias="stck_prpr")
    change: KisInt = Field(alias="prdy_vrss", default=0)
    change_sign: KisStr = Field(alias="prdy_vrss_sign", default="")
    change_rate: KisDecimal = Field(alias="prdy_ctrt", default=Decimal(0))
    open: KisInt = Field(alias="stck_oprc", default=0)
    high: KisInt = Field(alias="stck_hgpr", default=0)
    low: KisInt = Field(alias="stck_lwpr", default=0)
    upper_limit: KisInt = Field(alias="stck_mxpr", default=0)
    lower_limit: KisInt = Field(alias="stck_llam", default=0)
    base_price: KisInt = Field(alias="stck_sdpr", default=0)
    volume: KisInt = Field(alias="acml_vol", default=0)
    traded_value: KisInt = Field(alias="acml_tr_pbmn", default=0)
    volume_vs_prev_day_rate: KisDecimal = Field(alias="prdy_vrss_vol_rate", default=Decimal(0))
    vwap: KisDecimal = Field(alias="wghn_avrg_stck_prc", default=Decimal(0))
    tick_size: KisInt = Field(alias="aspr_unit", default=0)
    trading_unit: KisInt = Field(alias="hts_deal_qty_unit_val", default=1)
    market_name: KisStr = Field(alias="rprs_mrkt_kor_name", default="")
    sector_name: KisStr = Field(alias="bstp_kor_isnm", default="")
    status_code: KisStr = Field(alias="iscd_stat_cls_code", default="")
    halted: KisFlag = Field(alias="temp_stop_yn", default=False)
    warning_code: KisStr = Field(alias="mrkt_warn_cls_code", default="")
    vi_code: KisStr = Field(alias="vi_cls_code", default="")
    per: KisDecimal = Field(alias="per", default=Decimal(0))
    pbr: KisDecimal = Field(alias="pbr", default=Decimal(0))
    eps: KisDecimal = Field(alias="eps", default=Decimal(0))
    bps: KisDecimal = Field(alias="bps", default=Decimal(0))
    market_cap_100m_krw: KisInt = Field(alias="hts_avls", default=0)
    listed_shares: KisInt = Field(alias="lstn_stcn", default=0)
    w52_high: KisInt = Field(alias="w52_hgpr", default=0)
    w52_high_date: KisDate = Field(alias="w52_hgpr_date", default=None)
    w52_low: KisInt = Field(alias="w52_lwpr", default=0)
    w52_low_date: KisDate = Field(alias="w52_lwpr_date", default=None)
    foreign_holding_rate: KisDecimal = Field(alias="hts_frgn_ehrt", default=Decimal(0))
    foreign_net_buy_qty: KisInt = Field(alias="frgn_ntby_qty", default=0)


class DailyBar(RawKisModel):
    """One row of inquire-daily-itemchartprice (FHKST03010100) ``output2``."""

    date: KisDate = Field(alias="stck_bsop_date")
    open: KisInt = Field(alias="stck_oprc")
    high: KisInt = Field(alias="stck_hgpr")
    low: KisInt = Field(alias="stck_lwpr")
    close: KisInt = Field(alias="stck_clpr")
    volume: KisInt = Field(alias="acml_vol", default=0)
    traded_value: KisInt = Field(alias="acml_tr_pbmn", default=0)
    change: KisInt = Field(alias="prdy_vrss", default=0)
    change_sign: KisStr = Field(alias="prdy_vrss_sign", default="")
    ex_rights_code: KisStr = Field(alias="flng_cls_code", default="")
    split_rate: KisDecimal = Field(alias="prtt_rate", default=Decimal(0))
    modified: KisFlag = Field(alias="mod_yn", default=False)


class MinuteBar(RawKisModel):
    """One row of inquire-time-itemchartprice (FHKST03010200) ``output2``; ``at`` is the bar's KST time."""

    date: KisDate = Field(alias="stck_bsop_date")
    time: KisTime = Field(alias="stck_cntg_hour")
    open: KisInt = Field(alias="stck_oprc")
    high: KisInt = Field(alias="stck_hgpr")
    low: KisInt = Field(alias="stck_lwpr")
    close: KisInt = Field(alias="stck_prpr")
    volume: KisInt = Field(alias="cntg_vol", default=0)
    traded_value: KisInt = Field(alias="acml_tr_pbmn", default=0)

    @property
    def at(self) -> datetime:
        instant = kst_datetime_of(self.date, self.time)
        assert instant is not None, "validated rows always have a date and a time"
        return instant


class BookLevel(KisModel):
    price: int
    quantity: int


class OrderBookSnapshot(KisModel):
    """inquire-asking-price-exp-ccn (FHKST01010200): 10 levels, best first, plus the expected auction."""

    symbol: str
    at: datetime | None
    asks: tuple[BookLevel, ...]
    bids: tuple[BookLevel, ...]
    total_ask_quantity: int
    total_bid_quantity: int
    price: int
    expected_price: int
    expected_volume: int
    raw_book: dict[str, Any] = Field(default_factory=dict, repr=False)
    raw_expected: dict[str, Any] = Field(default_factory=dict, repr=False)


# --- trading ------------------------------------------------------------------------------


class OrderAck(KisModel):
    """order-cash / order-rvsecncl ``output``: the broker accepted the request (fills come later)."""

    org_no: str
    order_no: str
    ordered_at: datetime | None
    msg_cd: str
    message: str


class Holding(RawKisModel):
    """inquire-balance ``output1`` row; positions sold today stay with ``quantity == 0`` until settlement."""

    symbol: KisStr = Field(alias="pdno")
    name: KisStr = Field(alias="prdt_name", default="")
    quantity: KisInt = Field(alias="hldg_qty")
    sellable_quantity: KisInt = Field(alias="ord_psbl_qty", default=0)
    average_price: KisDecimal = Field(alias="pchs_avg_pric", default=Decimal(0))
    purchase_amount: KisInt = Field(alias="pchs_amt", default=0)
    price: KisInt = Field(alias="prpr", default=0)
    valuation: KisInt = Field(alias="evlu_amt", default=0)
    pnl: KisInt = Field(alias="evlu_pfls_amt", default=0)
    pnl_rate: KisDecimal = Field(alias="evlu_pfls_rt", default=Decimal(0))
    today_buy_quantity: KisInt = Field(alias="thdt_buyqty", default=0)
    today_sell_quantity: KisInt = Field(alias="thdt_sll_qty", default=0)


class BalanceSummary(RawKisModel):
    """inquire-balance ``output2[0]``."""

    cash: KisInt = Field(alias="dnca_tot_amt", default=0)
    cash_d1: KisInt = Field(alias="nxdy_excc_amt", default=0)
    cash_d2: KisInt = Field(alias="prvs_rcdl_excc_amt", default=0)
    today_buy_amount: KisInt = Field(alias="thdt_buy_amt", default=0)
    today_sell_amount: KisInt = Field(alias="thdt_sll_amt", default=0)
    today_fees: KisInt = Field(alias="thdt_tlex_amt", default=0)
    stock_valuation: KisInt = Field(alias="scts_evlu_amt", default=0)
    total_valuation: KisInt = Field(alias="tot_evlu_amt", default=0)
    net_assets: KisInt = Field(alias="nass_amt", default=0)
    purchase_total: KisInt = Field(alias="pchs_amt_smtl_amt", default=0)
    valuation_total: KisInt = Field(alias="evlu_amt_smtl_amt", default=0)
    pnl_total: KisInt = Field(alias="evlu_pfls_smtl_amt", default=0)


class Balance(KisModel):
    holdings: tuple[Holding, ...]
    summary: BalanceSummary

    @property
    def open_positions(self) -> tuple[Holding, ...]:
        return tuple(h for h in self.holdings if h.quantity > 0)


def _side(value: Any) -> str:
    code = str(value or "").strip()
    return {"01": "sell", "02": "buy"}.get(code, code)


class OrderRecord(RawKisModel):
    """inquire-daily-ccld ``output1`` row: one order with its fill state."""

    order_date: KisDate = Field(alias="ord_dt")
    order_time: KisTime = Field(alias="ord_tmd", default=None)
    branch_no: KisStr = Field(alias="ord_gno_brno", default="")
    order_no: KisStr = Field(alias="odno")
    original_order_no: KisStr = Field(alias="orgn_odno", default="")
    side: Annotated[str, BeforeValidator(_side)] = Field(alias="sll_buy_dvsn_cd")
    symbol: KisStr = Field(alias="pdno")
    name: KisStr = Field(alias="prdt_name", default="")
    order_division: KisStr = Field(alias="ord_dvsn_cd", default="")
    quantity: KisInt = Field(alias="ord_qty")
    price: KisInt = Field(alias="ord_unpr", default=0)
    filled_quantity: KisInt = Field(alias="tot_ccld_qty", default=0)
    average_fill_price: KisDecimal = Field(alias="avg_prvs", default=Decimal(0))
    filled_amount: KisInt = Field(alias="tot_ccld_amt", default=0)
    remaining_quantity: KisInt = Field(alias="rmn_qty", default=0)
    rejected_quantity: KisInt = Field(alias="rjct_qty", default=0)
    cancel_confirmed_quantity: KisInt = Field(alias="cncl_cfrm_qty", default=0)
    cancelled: KisFlag = Field(alias="cncl_yn", default=False)
    exchange: KisStr = Field(alias="excg_id_dvsn_Cd", default="")

    @property
    def ordered_at(self) -> datetime | None:
        return kst_datetime_of(self.order_date, self.order_time)


class DailyOrdersSummary(RawKisModel):
    """inquire-daily-ccld ``output2`` (an object)."""

    total_order_quantity: KisInt = Field(alias="tot_ord_qty", default=0)
    total_filled_quantity: KisInt = Field(alias="tot_ccld_qty", default=0)
    total_filled_amount: KisInt = Field(alias="tot_ccld_amt", default=0)
    estimated_fees: KisInt = Field(alias="prsm_tlex_smtl", default=0)
    average_price: KisDecimal = Field(alias="pchs_avg_pric", default=Decimal(0))


class DailyOrders(KisModel):
    orders: tuple[OrderRecord, ...]
    summary: DailyOrdersSummary


class BuyingPower(RawKisModel):
    """inquire-psbl-order ``output``."""

    orderable_cash: KisInt = Field(alias="ord_psbl_cash", default=0)
    reusable_amount: KisInt = Field(alias="ruse_psbl_amt", default=0)
    price_used: KisInt = Field(alias="psbl_qty_calc_unpr", default=0)
    no_margin_buy_amount: KisInt = Field(alias="nrcvb_buy_amt", default=0)
    no_margin_buy_quantity: KisInt = Field(alias="nrcvb_buy_qty", default=0)
    max_buy_amount: KisInt = Field(alias="max_buy_amt", default=0)
    max_buy_quantity: KisInt = Field(alias="max_buy_qty", default=0)
