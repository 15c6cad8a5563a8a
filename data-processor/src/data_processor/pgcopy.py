"""PostgreSQL's binary COPY format, laid out from numpy columns.

asyncpg's ``copy_records_to_table`` encodes a batch row by row from Python objects (a tuple and
a datetime per tick). The ticks of a message are columns already, so the COPY payload is built
with numpy instead: rows with the same byte layout (same text lengths, same NULLs) form one
structured array, filled a column at a time. Rows of different layouts are grouped by layout,
so their order in the payload may differ from the input order (a table has no row order).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # signature, flags, no extension
TRAILER: Final = struct.pack("!h", -1)
# PostgreSQL counts timestamps in µs from 2000-01-01 00:00 UTC.
POSTGRES_EPOCH_US: Final = 946_684_800_000_000
_NULL: Final = -1


@dataclass(frozen=True)
class Bigint:
    """A ``bigint`` column; NULL where ``present`` is False."""

    values: npt.NDArray[np.int64]
    present: npt.NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class Timestamp:
    """A ``timestamptz`` column from µs since the Unix epoch (UTC)."""

    micros: npt.NDArray[np.int64]


@dataclass(frozen=True)
class Text:
    """A ``text``/``varchar`` column: ``table[codes[i]]`` for row i, NULL where that is None."""

    codes: npt.NDArray[np.integer]
    table: Sequence[str | None]


Column = Bigint | Timestamp | Text


def binary_copy(columns: Sequence[Column], count: int) -> bytes:
    """The binary COPY payload of ``count`` rows with these columns (in the table's column order)."""
    sizes = [_field_sizes(column, count) for column in columns]
    radices = [int(field.max(initial=0)) + 2 for field in sizes]
    if math.prod(radices) >= 2**63:
        raise ValueError("field sizes too large to tell layouts apart")
    # One number per row naming its layout: the field sizes (-1 for NULL) in a mixed radix.
    layout = np.zeros(count, dtype=np.int64)
    for field, radix in zip(sizes, radices, strict=True):
        layout = layout * radix + (field + 1)
    chunks = [HEADER]
    if count and (layout == layout[0]).all():  # the usual case: one layout, rows in input order
        chunks.append(_rows(columns, [int(field[0]) for field in sizes], np.arange(count)))
    else:
        for kind in np.unique(layout).tolist():
            rows = np.flatnonzero(layout == kind)
            chunks.append(_rows(columns, [int(field[rows[0]]) for field in sizes], rows))
    chunks.append(TRAILER)
    return b"".join(chunks)


def _field_sizes(column: Column, count: int) -> npt.NDArray[np.int64]:
    """Each row's byte length of this field's value (-1 for NULL)."""
    if isinstance(column, Text):
        lengths = np.array([_NULL if v is None else len(v.encode()) for v in column.table], dtype=np.int64)
        sizes: npt.NDArray[np.int64] = lengths[column.codes]
        return sizes
    if isinstance(column, Bigint) and column.present is not None:
        return np.where(column.present, 8, _NULL).astype(np.int64)
    return np.full(count, 8, dtype=np.int64)


def _rows(columns: Sequence[Column], sizes: list[int], rows: npt.NDArray[np.intp]) -> bytes:
    """Rows sharing one layout (``sizes``: each field's length or -1) as one structured array."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for number, size in enumerate(sizes):
        fields.append((f"length{number}", ">i4"))
        if size > 0:
            kind = f"S{size}" if isinstance(columns[number], Text) else ">i8"
            fields.append((f"value{number}", kind))
    packed = np.empty(len(rows), dtype=np.dtype(fields))
    packed["count"] = len(columns)
    for number, (column, size) in enumerate(zip(columns, sizes, strict=True)):
        packed[f"length{number}"] = size
        if size <= 0:
            continue
        if isinstance(column, Text):
            encoded = np.array([b"" if v is None else v.encode() for v in column.table], dtype=f"S{size}")
            packed[f"value{number}"] = encoded[column.codes[rows]]
        elif isinstance(column, Timestamp):
            packed[f"value{number}"] = column.micros[rows] - POSTGRES_EPOCH_US
        else:
            packed[f"value{number}"] = column.values[rows]
    return packed.tobytes()
