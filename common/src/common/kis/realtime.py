"""Typed WebSocket events and the ``<enc>|<TR>|<NNN>|a^b^…`` frame parser (kis-api.md §5.4–§5.8).

Market records keep the KIS field names, lower-cased, in wire order (so the layout can be
checked against the reference at a glance); values are converted: prices and quantities to int,
rates to Decimal, dates to ``date``, times to ``time`` with KST-aware instants as properties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from common.kis.crypto import NoticeDecryptError, aes_cbc_base64_decrypt
from common.kis.models import kst_datetime_of, parse_date, parse_decimal, parse_int, parse_time, parse_yn

TRADE_TR = "H0STCNT0"
BOOK_TR = "H0STASP0"
NOTICE_TRS = frozenset({"H0STCNI0", "H0STCNI9"})
TRADE_FIELDS = 46
BOOK_FIELDS = 59
NOTICE_FIELDS = 26
LEGACY_NOTICE_FIELDS = 23


class FrameError(ValueError):
    """A data frame that does not match its TR's layout (the reason never includes the payload)."""


@dataclass(frozen=True)
class Subscription:
    """One registration: a TR and its key (stock code, or the HTS id for notices)."""

    tr_id: str
    tr_key: str = field(repr=False)

    @property
    def is_notice(self) -> bool:
        return self.tr_id in NOTICE_TRS

    def describe(self) -> str:
        """Loggable form: the HTS id of a notice subscription is kept out."""
        return f"{self.tr_id}:{'<hts_id>' if self.is_notice else self.tr_key}"


def _s(value: str) -> str:
    return value.strip()


def _t(value: str) -> time | None:
    return parse_time(value)


def _d(value: str) -> date | None:
    return parse_date(value)


def _opt_int(value: str) -> int | None:
    return parse_int(value) if value.strip() else None


_Conv = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class TradeTick:
    """H0STCNT0: one trade print, all 46 fields in wire order."""

    mksc_shrn_iscd: str
    stck_cntg_hour: time | None
    stck_prpr: int
    prdy_vrss_sign: str
    prdy_vrss: int
    prdy_ctrt: Decimal
    wghn_avrg_stck_prc: Decimal
    stck_oprc: int
    stck_hgpr: int
    stck_lwpr: int
    askp1: int
    bidp1: int
    cntg_vol: int
    acml_vol: int
    acml_tr_pbmn: int
    seln_cntg_csnu: int
    shnu_cntg_csnu: int
    ntby_cntg_csnu: int
    cttr: Decimal
    seln_cntg_smtn: int
    shnu_cntg_smtn: int
    ccld_dvsn: str
    shnu_rate: Decimal
    prdy_vol_vrss_acml_vol_rate: Decimal
    oprc_hour: time | None
    oprc_vrss_prpr_sign: str
    oprc_vrss_prpr: int
    hgpr_hour: time | None
    hgpr_vrss_prpr_sign: str
    hgpr_vrss_prpr: int
    lwpr_hour: time | None
    lwpr_vrss_prpr_sign: str
    lwpr_vrss_prpr: int
    bsop_date: date | None
    new_mkop_cls_code: str
    trht_yn: bool
    askp_rsqn1: int
    bidp_rsqn1: int
    total_askp_rsqn: int
    total_bidp_rsqn: int
    vol_tnrt: Decimal
    prdy_smns_hour_acml_vol: int
    prdy_smns_hour_acml_vol_rate: Decimal
    hour_cls_code: str
    mrkt_trtm_cls_code: str
    vi_stnd_prc: int | None
    received_at: datetime

    @property
    def symbol(self) -> str:
        return self.mksc_shrn_iscd

    @property
    def price(self) -> int:
        return self.stck_prpr

    @property
    def traded_at(self) -> datetime | None:
        """The trade's KST instant (business date + trade time)."""
        return kst_datetime_of(self.bsop_date, self.stck_cntg_hour)


_TRADE_CONVERTERS: tuple[_Conv, ...] = (
    _s, _t, parse_int, _s, parse_int, parse_decimal, parse_decimal, parse_int, parse_int, parse_int,
    parse_int, parse_int, parse_int, parse_int, parse_int, parse_int, parse_int, parse_int, parse_decimal, parse_int,
    parse_int, _s, parse_decimal, parse_decimal, _t, _s, parse_int, _t, _s, parse_int,
    _t, _s, parse_int, _d, _s, parse_yn, parse_int, parse_int, parse_int, parse_int,
    parse_decimal, parse_int, parse_decimal, _s, _s, _opt_int,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class OrderBookUpdate:
    """H0STASP0: 10-level book, 59 fields (levels grouped in tuples, best first)."""

    mksc_shrn_iscd: str
    bsop_hour: time | None
    hour_cls_code: str
    askp: tuple[int, ...]
    bidp: tuple[int, ...]
    askp_rsqn: tuple[int, ...]
    bidp_rsqn: tuple[int, ...]
    total_askp_rsqn: int
    total_bidp_rsqn: int
    ovtm_total_askp_rsqn: int
    ovtm_total_bidp_rsqn: int
    antc_cnpr: int
    antc_cnqn: int
    antc_vol: int
    antc_cntg_vrss: int
    antc_cntg_vrss_sign: str
    antc_cntg_prdy_ctrt: Decimal
    acml_vol: int
    total_askp_rsqn_icdc: int
    total_bidp_rsqn_icdc: int
    ovtm_total_askp_icdc: int
    ovtm_total_bidp_icdc: int
    stck_deal_cls_code: str
    received_at: datetime

    @property
    def symbol(self) -> str:
        return self.mksc_shrn_iscd


def _book(values: Sequence[str], received_at: datetime) -> OrderBookUpdate:
    ints = [parse_int(v) for v in values[3:43]]
    rest = values[43:]
    return OrderBookUpdate(
        mksc_shrn_iscd=values[0].strip(),
        bsop_hour=parse_time(values[1]),
        hour_cls_code=values[2].strip(),
        askp=tuple(ints[0:10]),
        bidp=tuple(ints[10:20]),
        askp_rsqn=tuple(ints[20:30]),
        bidp_rsqn=tuple(ints[30:40]),
        total_askp_rsqn=parse_int(rest[0]),
        total_bidp_rsqn=parse_int(rest[1]),
        ovtm_total_askp_rsqn=parse_int(rest[2]),
        ovtm_total_bidp_rsqn=parse_int(rest[3]),
        antc_cnpr=parse_int(rest[4]),
        antc_cnqn=parse_int(rest[5]),
        antc_vol=parse_int(rest[6]),
        antc_cntg_vrss=parse_int(rest[7]),
        antc_cntg_vrss_sign=rest[8].strip(),
        antc_cntg_prdy_ctrt=parse_decimal(rest[9]),
        acml_vol=parse_int(rest[10]),
        total_askp_rsqn_icdc=parse_int(rest[11]),
        total_bidp_rsqn_icdc=parse_int(rest[12]),
        ovtm_total_askp_icdc=parse_int(rest[13]),
        ovtm_total_bidp_icdc=parse_int(rest[14]),
        stck_deal_cls_code=rest[15].strip(),
        received_at=received_at,
    )


@dataclass(frozen=True, slots=True)
class ExecutionNotice:
    """H0STCNI0/H0STCNI9: order acceptance / fill / reject notice (26-field layout; 23 accepted).

    ``cust_id``, ``acnt_no`` and ``acnt_name`` identify the account owner and stay out of reprs.
    In the 23-field layout ``ord_cond_prc``, ``ord_exg_gb``, ``popup_yn`` and ``filler`` are blank.
    """

    cust_id: str = field(repr=False)
    acnt_no: str = field(repr=False)
    oder_no: str
    ooder_no: str
    seln_byov_cls: str
    rctf_cls: str
    oder_kind: str
    oder_cond: str
    stck_shrn_iscd: str
    cntg_qty: int
    cntg_unpr: int
    stck_cntg_hour: time | None
    rfus_yn: str
    cntg_yn: str
    acpt_yn: str
    brnc_no: str
    oder_qty: int
    acnt_name: str = field(repr=False)
    ord_cond_prc: int | None
    ord_exg_gb: str
    popup_yn: str
    filler: str
    crdt_cls: str
    crdt_loan_date: date | None
    cntg_isnm40: str
    oder_prc: int
    tr_id: str
    layout: int
    received_at: datetime

    @property
    def side(self) -> str:
        return {"01": "sell", "02": "buy"}.get(self.seln_byov_cls, self.seln_byov_cls)

    @property
    def is_fill(self) -> bool:
        return self.cntg_yn == "2"

    @property
    def is_rejected(self) -> bool:
        return self.rfus_yn == "1"

    @property
    def symbol(self) -> str:
        return self.stck_shrn_iscd


def _notice(values: Sequence[str], tr_id: str, received_at: datetime) -> ExecutionNotice:
    v = [x.strip() for x in values]
    common: dict[str, Any] = {
        "cust_id": v[0],
        "acnt_no": v[1],
        "oder_no": v[2],
        "ooder_no": v[3],
        "seln_byov_cls": v[4],
        "rctf_cls": v[5],
        "oder_kind": v[6],
        "oder_cond": v[7],
        "stck_shrn_iscd": v[8],
        "cntg_qty": parse_int(v[9]),
        "cntg_unpr": parse_int(v[10]),
        "stck_cntg_hour": parse_time(v[11]),
        "rfus_yn": v[12],
        "cntg_yn": v[13],
        "acpt_yn": v[14],
        "brnc_no": v[15],
        "oder_qty": parse_int(v[16]),
        "acnt_name": v[17],
        "tr_id": tr_id,
        "layout": len(v),
        "received_at": received_at,
    }
    if len(v) == NOTICE_FIELDS:
        return ExecutionNotice(
            **common,
            ord_cond_prc=_opt_int(v[18]),
            ord_exg_gb=v[19],
            popup_yn=v[20],
            filler=v[21],
            crdt_cls=v[22],
            crdt_loan_date=parse_date(v[23]),
            cntg_isnm40=v[24],
            oder_prc=parse_int(v[25]),
        )
    # Legacy: 18 CNTG_ISNM, 19 CRDT_CLS, 20 CRDT_LOAN_DATE, 21 CNTG_ISNM40, 22 ODER_PRC.
    return ExecutionNotice(
        **common,
        ord_cond_prc=None,
        ord_exg_gb="",
        popup_yn="",
        filler="",
        crdt_cls=v[19],
        crdt_loan_date=parse_date(v[20]),
        cntg_isnm40=v[21] or v[18],
        oder_prc=parse_int(v[22]),
    )


@dataclass(frozen=True)
class Connected:
    """A session is open and every registration was re-sent.

    ``gap_since`` is set after a reconnect: data between it and ``at`` was not received.
    """

    at: datetime
    attempt: int
    resubscribed: tuple[Subscription, ...]
    gap_since: datetime | None = None


@dataclass(frozen=True)
class Disconnected:
    """An open session ended (``reason`` is safe to log); a reconnect follows unless the client is closing."""

    at: datetime
    reason: str


@dataclass(frozen=True)
class Reconnecting:
    """No session: attempt ``attempt`` follows in ``delay_seconds`` (wall-clock seconds, backing off).

    ``reason`` says why the last attempt or session ended (``OPSP8996 ALREADY IN USE appkey``, a
    network error's type); it is safe to log.
    """

    at: datetime
    attempt: int
    delay_seconds: float
    reason: str


@dataclass(frozen=True)
class SubscriptionFailed:
    """The server refused a (re)registration; it is no longer tracked."""

    at: datetime
    subscription: Subscription
    msg_cd: str
    message: str


@dataclass(frozen=True)
class MalformedFrame:
    """A data frame that could not be parsed (reported, then skipped)."""

    at: datetime
    tr_id: str
    reason: str


KisEvent = (
    TradeTick
    | OrderBookUpdate
    | ExecutionNotice
    | Connected
    | Disconnected
    | Reconnecting
    | SubscriptionFailed
    | MalformedFrame
)


@dataclass(frozen=True)
class AesKey:
    key: str = field(repr=False)
    iv: str = field(repr=False)


def is_data_frame(text: str) -> bool:
    return len(text) > 2 and text[0] in "01" and text[1] == "|"


def parse_data_frame(
    text: str, keys: Mapping[str, AesKey], received_at: datetime
) -> list[TradeTick | OrderBookUpdate | ExecutionNotice]:
    """The records of one data frame, decrypting notices with the key/iv of their ack."""
    parts = text.split("|", 3)
    if len(parts) != 4:
        raise FrameError("not a <enc>|<tr>|<count>|<payload> frame")
    enc, tr_id, count_text, payload = parts
    try:
        count = int(count_text)
    except ValueError:
        raise FrameError(f"record count {count_text[:8]!r} is not a number") from None
    if count < 1:
        raise FrameError("record count is zero")
    if enc == "1":
        aes = keys.get(tr_id)
        if aes is None:
            raise FrameError("encrypted frame before its subscription ack (no key/iv)")
        try:
            payload = aes_cbc_base64_decrypt(aes.key, aes.iv, payload)
        except NoticeDecryptError as exc:
            raise FrameError(str(exc)) from None
    values = payload.split("^")
    if tr_id == TRADE_TR:
        per_record = TRADE_FIELDS
    elif tr_id == BOOK_TR:
        per_record = BOOK_FIELDS
    elif tr_id in NOTICE_TRS:
        per_record = len(values) // count
        if per_record not in (NOTICE_FIELDS, LEGACY_NOTICE_FIELDS):
            raise FrameError(f"{len(values)} fields for {count} notice record(s)")
    else:
        raise FrameError("unsupported TR")
    if len(values) != per_record * count:
        raise FrameError(f"{len(values)} fields for {count} record(s) of {per_record}")
    records: list[TradeTick | OrderBookUpdate | ExecutionNotice] = []
    try:
        for index in range(count):
            chunk = values[index * per_record : (index + 1) * per_record]
            if tr_id == TRADE_TR:
                converted: list[Any] = [conv(value) for conv, value in zip(_TRADE_CONVERTERS, chunk, strict=True)]
                converted.append(received_at)
                records.append(TradeTick(*converted))
            elif tr_id == BOOK_TR:
                records.append(_book(chunk, received_at))
            else:
                records.append(_notice(chunk, tr_id, received_at))
    except ValueError as exc:
        raise FrameError(f"bad value: {type(exc).__name__}") from None
    return records
