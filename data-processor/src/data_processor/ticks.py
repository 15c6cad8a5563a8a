"""A batch of ticks as columns: built once per message, so the hot path works on arrays.

Validation, de-duplication and minute grouping of a 5,000-tick batch in Python loops cost
several microseconds a tick; on numpy columns they cost a fraction of one. Columns come either
from ``Tick`` models or — the tick queue's hot path — straight from the message's JSON, without
a model per tick (``decode_tick_message``). ``tick(i)`` rebuilds one model where a record is
needed whole (a quarantined tick).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Final

import annotated_types
import numpy as np
import numpy.typing as npt
from pydantic import ValidationError
from pydantic_core import from_json, to_json

from common.contracts import Envelope, EnvelopeHeader, MarketTickBatchV1, Tick

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MINUTE_US = 60_000_000
INT64_MAX = 2**63 - 1

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
# A row of the ``ticks`` table, in ``repository.TICK_COLUMNS`` order.
TickTableRow = tuple[str, datetime, int, int, int, int | None, str | None]
Positions = npt.NDArray[np.intp]
# ``side`` as a small code: an index into ``SIDES``.
SIDES: Final = (None, "buy", "sell")
_SIDE_CODES: Final = {side: code for code, side in enumerate(SIDES)}
_KNOWN_SIDES: Final = frozenset(SIDES)


def to_micros(instant: datetime) -> int:
    """Microseconds since the epoch, exact (a float timestamp loses microseconds after 2041)."""
    return (instant - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class TickColumns:
    """The ticks of one message as columns (times in µs since the epoch, UTC).

    ``symbol`` holds indices into ``symbols``, which is sorted, so ordering by the index orders
    by the symbol; ``side`` holds indices into ``SIDES``; ``cum_volume`` is 0 where
    ``has_cum_volume`` is False (no value). Building raises ``OverflowError`` for an integer
    beyond int64 — a value PostgreSQL's ``bigint`` columns would refuse as well.
    """

    symbols: tuple[str, ...]
    symbol: Positions
    ts: Int64s
    seq: Int64s
    price: Int64s
    volume: Int64s
    cum_volume: Int64s
    has_cum_volume: Bools
    side: npt.NDArray[np.int8]

    @classmethod
    def of(cls, ticks: Sequence[Tick]) -> TickColumns:
        # One pass over the models; the integer columns then convert from tuples in C.
        rows = [(t.symbol, t.ts, t.seq, t.price, t.volume, t.cum_volume, t.side) for t in ticks]
        names, times, seqs, prices, volumes, cums, sides = zip(*rows, strict=True) if rows else ((),) * 7
        # ``to_micros`` inlined: a call per tick is a measurable share of the batch.
        ts = np.fromiter(((t - EPOCH) // MICROSECOND for t in times), dtype=np.int64, count=len(rows))
        return cls._build(names, ts, seqs, prices, volumes, cums, sides)

    @classmethod
    def _build(
        cls,
        names: Sequence[str],
        ts: Int64s,
        seqs: Sequence[int],
        prices: Sequence[int],
        volumes: Sequence[int],
        cums: Sequence[int | None],
        sides: Sequence[str | None],
    ) -> TickColumns:
        count = len(names)
        symbols = tuple(sorted(set(names)))
        if len(symbols) == 1:
            codes = np.zeros(count, dtype=np.intp)
        else:
            index = {name: i for i, name in enumerate(symbols)}
            codes = np.fromiter((index[name] for name in names), dtype=np.intp, count=count)
        if None in cums:
            has_cum = np.fromiter((c is not None for c in cums), dtype=np.bool_, count=count)
            cum = np.fromiter((c or 0 for c in cums), dtype=np.int64, count=count)
        else:
            has_cum, cum = np.ones(count, dtype=np.bool_), np.array(cums, dtype=np.int64).reshape(count)
        if set(sides) == {None}:
            side = np.zeros(count, dtype=np.int8)
        else:
            side = np.fromiter((_SIDE_CODES[s] for s in sides), dtype=np.int8, count=count)
        return cls(
            symbols=symbols,
            symbol=codes,
            ts=ts,
            seq=np.array(seqs, dtype=np.int64).reshape(count),
            price=np.array(prices, dtype=np.int64).reshape(count),
            volume=np.array(volumes, dtype=np.int64).reshape(count),
            cum_volume=cum,
            has_cum_volume=has_cum,
            side=side,
        )

    @classmethod
    def from_json(cls, ticks: list[Any]) -> TickColumns | None:
        """Columns of a tick batch's ``ticks`` as parsed from JSON, or None to let pydantic decide.

        Only the form ``Tick.model_dump_json`` writes is read here — every field present, JSON
        integers, ``…Z`` times with no or six fractional digits — and only values the contract
        accepts as they are; for those the columns equal what validating ``Tick`` models gives.
        Anything else (another time form, a string for a number, a value out of range, an
        unknown field) returns None: the caller then validates with the contract itself, which
        accepts or refuses it with its own reasons.
        """
        count = len(ticks)
        if not count or set(map(type, ticks)) != {dict} or set(map(len, ticks)) != {len(_TICK_FIELDS)}:
            return None
        try:
            # Seven keys each, all seven found: no tick has a field the contract does not know.
            names, times, seqs, prices, volumes, cums, sides = (list(map(get, ticks)) for get in _FIELD_GETTERS)
            # ``set`` raises TypeError for an unhashable value (a list where a string belongs).
            if not (
                all(type(name) is str and _SYMBOL.fullmatch(name) for name in set(names)) and set(sides) <= _KNOWN_SIDES
            ):
                return None
        except (KeyError, TypeError):
            return None
        if not (
            set(map(type, times)) == {str}
            and set(map(type, seqs)) == set(map(type, prices)) == set(map(type, volumes)) == {int}
            and set(map(type, cums)) <= {int, type(None)}
        ):
            return None
        ts = _utc_micros(times)
        if ts is None:
            return None
        try:
            columns = cls._build(names, ts, seqs, prices, volumes, cums, sides)
        except OverflowError:
            return None
        valid = (
            (columns.seq >= 0).all()
            and (columns.price > 0).all()
            and (columns.volume >= 0).all()
            and (columns.cum_volume >= 0).all()
        )
        return columns if valid else None

    def __len__(self) -> int:
        return len(self.ts)

    def tick(self, position: int) -> Tick:
        """The tick at ``position`` as a model."""
        cum = int(self.cum_volume[position]) if self.has_cum_volume[position] else None
        return Tick(
            symbol=self.symbols[self.symbol[position]],
            ts=from_micros(int(self.ts[position])),
            seq=int(self.seq[position]),
            price=int(self.price[position]),
            volume=int(self.volume[position]),
            cum_volume=cum,
            side=SIDES[self.side[position]],
        )

    def same_values(self, a: int, b: int) -> bool:
        """Whether the ticks at positions ``a`` and ``b`` are equal in every field."""
        return bool(
            self.symbol[a] == self.symbol[b]
            and self.ts[a] == self.ts[b]
            and self.seq[a] == self.seq[b]
            and self.price[a] == self.price[b]
            and self.volume[a] == self.volume[b]
            and self.has_cum_volume[a] == self.has_cum_volume[b]
            and self.cum_volume[a] == self.cum_volume[b]
            and self.side[a] == self.side[b]
        )

    def distinct_identities(self, positions: Positions) -> Positions:
        """``positions`` ordered by (symbol, ts, seq), keeping the first of each identity."""
        if len(positions) == 0:
            return positions
        # lexsort is stable: among equal identities the earliest position comes first.
        order = positions[np.lexsort((self.seq[positions], self.ts[positions], self.symbol[positions]))]
        symbol, ts, seq = self.symbol[order], self.ts[order], self.seq[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (symbol[1:] != symbol[:-1]) | (ts[1:] != ts[:-1]) | (seq[1:] != seq[:-1])
        return order[first]

    def rows(self, positions: Positions) -> list[TickTableRow]:
        """Rows for the ``ticks`` table of the ticks at ``positions``."""
        cums = np.where(self.has_cum_volume[positions], self.cum_volume[positions], -1).tolist()
        return [
            (self.symbols[s], from_micros(t), q, p, v, None if c < 0 else c, SIDES[d])
            for s, t, q, p, v, c, d in zip(
                self.symbol[positions].tolist(),
                self.ts[positions].tolist(),
                self.seq[positions].tolist(),
                self.price[positions].tolist(),
                self.volume[positions].tolist(),
                cums,
                self.side[positions].tolist(),
                strict=True,
            )
        ]


_TICK_FIELDS: Final = ("symbol", "ts", "seq", "price", "volume", "cum_volume", "side")
_FIELD_GETTERS: Final = tuple(itemgetter(name) for name in _TICK_FIELDS)
# The contract's ``^Q?[0-9A-Z]{6}$`` as pydantic applies it (Rust regex: ``$`` is the very end).
_SYMBOL: Final = re.compile(r"Q?[0-9A-Z]{6}")
_SECONDS_FORM, _MICROS_FORM = len("2024-01-02T00:00:00Z"), len("2024-01-02T00:00:00.000000Z")
_DIGITS: Final = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
_SEPARATORS: Final = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":"}
_MONTH_DAYS: Final = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DAY_US: Final = 86_400_000_000


def _utc_micros(times: Sequence[str]) -> Int64s | None:
    """µs since the epoch of ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` strings; None if any has another form."""
    count = len(times)
    lengths = np.fromiter(map(len, times), dtype=np.int64, count=count)
    long = lengths == _MICROS_FORM
    if not (long | (lengths == _SECONDS_FORM)).all():
        return None
    try:
        # One row of bytes per string, shorter strings padded with zeros.
        chars = np.array(times, dtype=f"S{_MICROS_FORM}").view(np.uint8).reshape(count, _MICROS_FORM)
    except UnicodeEncodeError:
        return None
    digit = chars - np.uint8(ord("0"))  # wraps below "0": one comparison tells a digit
    last = np.where(long, _MICROS_FORM - 1, _SECONDS_FORM - 1)
    if not (
        (digit[:, _DIGITS] <= 9).all()
        and all((chars[:, at] == ord(c)).all() for at, c in _SEPARATORS.items())
        and (chars[np.arange(count), last] == ord("Z")).all()
        and (chars[long, _SECONDS_FORM - 1] == ord(".")).all()
        and (digit[long, _SECONDS_FORM : _MICROS_FORM - 1] <= 9).all()
    ):
        return None

    def number(first: int, last: int) -> Int64s:
        value = np.zeros(count, dtype=np.int64)
        for at in range(first, last):
            value = value * 10 + digit[:, at]
        return value

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
    if not ((year >= 1).all() and ((month >= 1) & (month <= 12)).all() and (day >= 1).all()):
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if not (day <= _MONTH_DAYS[month - 1] + (leap & (month == 2))).all():
        return None
    if not ((hour <= 23) & (minute <= 59) & (second <= 59)).all():
        return None
    result: Int64s = _days_from_civil(year, month, day) * _DAY_US + ((hour * 60 + minute) * 60 + second) * 1_000_000
    if long.any():
        # Padding bytes of the short form are zeros, not digits: count their fraction as none.
        result += np.where(long, number(_SECONDS_FORM, _MICROS_FORM - 1), 0)
    return result


def _days_from_civil(year: Int64s, month: Int64s, day: Int64s) -> Int64s:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's ``days_from_civil``)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: Int64s = era * 146_097 + day_of_era - 719_468
    return days


@dataclass(frozen=True)
class TickBatch:
    """A message of the tick queue as the processor reads it: the envelope's identity, and its
    ticks as columns (None when the payload is not a tick batch)."""

    message_id: uuid.UUID
    correlation_id: str | None
    kind: str
    columns: TickColumns | None

    @classmethod
    def of(cls, envelope: Envelope) -> TickBatch:
        payload = envelope.payload
        columns = TickColumns.of(payload.ticks) if isinstance(payload, MarketTickBatchV1) else None
        return cls(envelope.message_id, envelope.correlation_id, envelope.kind, columns)


_TICK_BATCH_KIND: Final = "market.tick_batch.v1"
_MAX_TICKS: Final = next(
    rule.max_length
    for rule in MarketTickBatchV1.model_fields["ticks"].metadata
    if isinstance(rule, annotated_types.MaxLen)
)
_HEADER_FIELDS: Final = tuple(EnvelopeHeader.model_fields)


def decode_tick_message(body: bytes) -> TickBatch:
    """The tick queue's decoder: a message body as a ``TickBatch``.

    A tick batch in the form our producers write is read as columns straight from the JSON
    (``TickColumns.from_json``) and its envelope fields validated by ``EnvelopeHeader`` — no
    model per tick. Every other body goes through ``Envelope`` validation, as on any other
    queue, so a body the contract refuses raises the same ``ValidationError`` (and the bus
    dead-letters it with the same reason).
    """
    fast = _fast_tick_batch(body)
    return fast if fast is not None else TickBatch.of(Envelope.model_validate_json(body))


def _fast_tick_batch(body: bytes) -> TickBatch | None:
    try:
        document = from_json(body, cache_strings="keys")
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    payload = document.get("payload")
    if not (isinstance(payload, dict) and payload.keys() == {"kind", "ticks"} and payload["kind"] == _TICK_BATCH_KIND):
        return None
    ticks = payload["ticks"]
    if not (isinstance(ticks, list) and 1 <= len(ticks) <= _MAX_TICKS):
        return None
    columns = TickColumns.from_json(ticks)
    if columns is None:
        return None
    # The envelope's own fields, checked by the contract from JSON as ``Envelope`` would check them.
    header_fields = {name: document[name] for name in _HEADER_FIELDS if name in document}
    if not all(value is None or type(value) is str for value in header_fields.values()):
        return None
    try:
        header = EnvelopeHeader.model_validate_json(to_json(header_fields))
    except (ValidationError, ValueError):
        return None
    return TickBatch(header.message_id, header.correlation_id, _TICK_BATCH_KIND, columns)
