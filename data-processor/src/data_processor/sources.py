"""Reading market data files into contract records (the KRX daily CSVs of ``shared/data``).

Rows that cannot become a contract record (a symbol that is not a KRX code, a number that is
not an integer, a negative price) are returned as ``Rejection``s for the quarantine rather than
dropped, so a folder's row count always equals stored plus quarantined.
"""

from __future__ import annotations

import csv
import uuid
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from common.contracts import Bar
from data_processor.validation import INVALID_RECORD, Rejection, daily_bar_ts

SOURCE_NAMESPACE = uuid.UUID("0c7e1f7a-4b55-4c3e-8a57-2d7f1a0e9b31")


def source_id(path: Path) -> uuid.UUID:
    """A stable id for a file's rows in the quarantine (re-reading it never quarantines twice)."""
    return uuid.uuid5(SOURCE_NAMESPACE, path.name)


def read_daily_csv(path: Path) -> tuple[list[Bar], list[Rejection]]:
    """``date,open,high,low,close,volume`` rows of one symbol (named by the file) as daily bars."""
    symbol = path.stem
    bars: list[Bar] = []
    rejected: list[Rejection] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for position, row in enumerate(csv.DictReader(handle)):
            try:
                day = date.fromisoformat(row["date"])
                bars.append(
                    Bar(
                        symbol=symbol,
                        timeframe="1d",
                        ts=daily_bar_ts(day),
                        open=int(row["open"]),
                        high=int(row["high"]),
                        low=int(row["low"]),
                        close=int(row["close"]),
                        volume=int(row["volume"]),
                    )
                )
            except (ValidationError, ValueError, KeyError, TypeError) as exc:
                detail = str(exc).splitlines()[0][:500] if not isinstance(exc, ValidationError) else _first_error(exc)
                rejected.append(Rejection(position, INVALID_RECORD, detail, dict(row), "bar", symbol[:32], "1d", None))
    return bars, rejected


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
