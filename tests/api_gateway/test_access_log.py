"""The gateway's access lines: kept for the answers it refuses or that failed, not for every call."""

from __future__ import annotations

import logging

from api_gateway.app import ErrorAccessLinesOnly


def uvicorn_access_record(status: int) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it."""
    args = ("127.0.0.1:50000", "GET", "/api/v1/trade/positions", "1.1", status)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


def test_access_lines_are_kept_for_error_answers_only() -> None:
    keep = ErrorAccessLinesOnly()

    statuses = (200, 204, 304, 400, 401, 429, 502, 503)
    kept = [status for status in statuses if keep.filter(uvicorn_access_record(status))]

    assert kept == [400, 401, 429, 502, 503]
    other = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "something else", None, None)
    assert keep.filter(other)
