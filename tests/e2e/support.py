"""What the end-to-end tests share: waiting for a condition across processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import pytest

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, AssertionError) as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
