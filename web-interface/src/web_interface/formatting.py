"""How numbers, money and times read on the pages (the same rules as the browser's
``Intl.NumberFormat('ko-KR')``: KRW as ``₩1,234,567``, no decimals, grouping by thousands)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Undefined

from common.clock import KST

DASH = "–"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool | Undefined):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN reads as missing


def krw(value: Any, *, signed: bool = False) -> str:
    """``1234567`` → ``₩1,234,567``; ``-5000`` → ``-₩5,000``; ``signed`` adds ``+`` to gains."""
    number = _number(value)
    if number is None:
        return DASH
    whole = round(number)
    sign = "-" if whole < 0 else ("+" if signed and whole > 0 else "")
    return f"{sign}₩{abs(whole):,}"


def number(value: Any, digits: int = 0) -> str:
    parsed = _number(value)
    return DASH if parsed is None else f"{parsed:,.{digits}f}"


def percent(value: Any, digits: int = 2, *, signed: bool = False) -> str:
    """A fraction as a percentage: ``0.1234`` → ``12.34%``."""
    parsed = _number(value)
    if parsed is None:
        return DASH
    text = f"{parsed * 100:,.{digits}f}%"
    return f"+{text}" if signed and parsed > 0 else text


def kst(value: Any, style: str = "datetime") -> str:
    """An ISO time (or datetime) in Korea Standard Time: ``2026-03-04 10:15:02``."""
    if value is None or value == "" or isinstance(value, Undefined):
        return DASH
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone(KST)
    if style == "time":
        return when.strftime("%H:%M:%S")
    if style == "date":
        return when.strftime("%Y-%m-%d")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def tone(value: Any) -> str:
    """A CSS class for gains and losses."""
    parsed = _number(value)
    if parsed is None or parsed == 0:
        return ""
    return "gain" if parsed > 0 else "loss"


FILTERS = {"krw": krw, "number": number, "percent": percent, "kst": kst, "tone": tone}
