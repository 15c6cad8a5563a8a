"""A bounded in-memory ring buffer of this process's recent log events, for the dashboard.

``common.logging.configure`` adds a ``BufferHandler`` to the root logger, so every record that
passes the level (structlog events and stdlib lines alike) lands here as the same redacted
dict stdout shows. Each event gets an increasing ``id``, so a reader can ask for what came
after the last one it saw. Nothing is persisted: this is a live tail, not an archive (ELK is).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog
from structlog.typing import Processor

DEFAULT_CAPACITY = 2_000
LEVELS = ("debug", "info", "warning", "error", "critical")


def _component(logger_name: str) -> str:
    """``trader.service`` → ``trader``; ``api_gateway.proxy`` → ``api-gateway``."""
    return logger_name.split(".", 1)[0].replace("_", "-") if logger_name else ""


class LogBuffer:
    """The last ``capacity`` events of this process, thread-safe (logging happens on threads too)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def append(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append({"id": next(self._ids), **event})

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def recent(
        self,
        *,
        after: int = 0,
        min_level: str | None = None,
        services: Sequence[str] = (),
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Events after ``after``, at ``min_level`` or above, logged by ``services``; the newest ``limit``."""
        floor = LEVELS.index(min_level) if min_level in LEVELS else 0
        wanted = set(services)
        with self._lock:
            snapshot = list(self._events)
        selected = [
            e
            for e in snapshot
            if e["id"] > after
            and LEVELS.index(e["level"]) >= floor
            # By the package that logged: a ``service`` field can name another service (the
            # gateway logs which service it forwarded to), and all-in-one runs them all in one process.
            and (not wanted or e["component"] in wanted)
        ]
        return selected[-limit:] if limit > 0 else []


# One buffer per process, like the redactor.
buffer = LogBuffer()


class BufferHandler(logging.Handler):
    """Renders each record through the shared processors (redaction included) into ``buffer``."""

    def __init__(self, shared: list[Processor], target: LogBuffer | None = None) -> None:
        super().__init__()
        self.target = target if target is not None else buffer
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(default=str),
                ],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            event: dict[str, Any] = json.loads(self.format(record))
        except Exception:  # a log line must never break the caller; report it the stdlib way
            self.handleError(record)
            return
        level = str(event.pop("level", record.levelname)).lower()
        logger_name = str(event.pop("logger", record.name))
        self.target.append(
            {
                "at": event.pop("timestamp", None),
                "level": level if level in LEVELS else "info",
                "service": str(event.pop("service", "")),
                "component": _component(logger_name),
                "logger": logger_name,
                "event": str(event.pop("event", "")),
                "fields": {k: v for k, v in event.items() if k != "mode"},
            }
        )
