"""Prometheus metrics shared by the services, registered once per process.

Labels stay low-cardinality: message kinds and queue names are fixed sets in a deployment,
KIS ``msg_cd`` values come from a short published list, order states from the state machine.
The platform-wide series are declared here so each is registered once per process (all-in-one
mode imports every service into one process); services import what they record.
``/metrics`` (``common.service``) exposes the default registry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram

BUS_PUBLISHED = Counter("tradebot_bus_messages_published_total", "Messages published and confirmed", ["kind"])
BUS_CONSUMED = Counter(
    "tradebot_bus_messages_consumed_total",
    "Messages taken from a queue, by outcome: ok (acked), retried, dead_lettered, invalid",
    ["queue", "outcome"],
)
BUS_DEAD_LETTERED = Counter(
    "tradebot_bus_messages_dead_lettered_total", "Messages moved to a dead-letter queue", ["queue"]
)
BUS_HANDLER_SECONDS = Histogram(
    "tradebot_bus_handler_seconds",
    "Time a consumer's handler took per message",
    ["queue"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

INBOX_DUPLICATES = Counter(
    "tradebot_bus_duplicates_skipped_total", "Redelivered messages the inbox recognised as done", ["consumer"]
)

DB_WRITE_SECONDS = Histogram(
    "tradebot_db_write_seconds",
    "Latency of bulk database writes",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

KIS_REQUESTS = Counter("tradebot_kis_requests_total", "KIS REST calls answered", ["tr_id", "outcome"])
KIS_ERRORS = Counter("tradebot_kis_errors_total", "KIS errors by message code", ["msg_cd"])
KIS_WS_CONNECTS = Counter(
    "tradebot_kis_ws_connection_attempts_total",
    "KIS WebSocket connection attempts by outcome: connected (registrations re-sent), refused (the server "
    "ended the session: OPSP8996 appkey in use, OPSP0011 approval not found), failed (network, approval key)",
    ["outcome"],
)

ORDERS = Counter("tradebot_orders_total", "Orders entering a state (new, submitted, filled, ...)", ["state"])
DECISION_SECONDS = Histogram(
    "tradebot_decision_seconds",
    "From features received to decision stored and sent to the trader",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRAINING_STEPS = Counter("tradebot_training_steps_total", "Environment steps done by training jobs")


@contextlib.contextmanager
def observe_db_write(operation: str) -> Iterator[None]:
    """Time a bulk write (``with observe_db_write("bars"): ...``), failures included."""
    started = time.perf_counter()
    try:
        yield
    finally:
        DB_WRITE_SECONDS.labels(operation).observe(time.perf_counter() - started)
