"""The routing table: every public ``/api/v1`` operation the gateway forwards to a service.

One row per operation: method, public path (under ``/api/v1``), the service that owns it, the
path on that service, the least role allowed, the timeout, and whether it is an idempotent
read (retried on another replica after a timeout or a 5xx). Path parameters keep their names
on both sides. Adding a service route to the public API is adding a row here.

Ownership of the two dashboard reads that no service serves yet: ``/dashboard/performance``
(equity curve, returns, drawdown) goes to the trader, which owns fills, positions and P&L;
``/dashboard/logs`` (orders, rejections, kill-switch and error events for the dashboard's log
page) goes to the trader too, which writes that activity. ``/dashboard/settings`` is served
by the gateway itself (``platform_settings``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from api_gateway.roles import Role

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    service: str
    upstream_path: str
    role: Role
    timeout: float
    retry: bool
    summary: str
    tag: str
    # The service's method when it differs from the public one (PUT /trade/kill-switch → POST).
    upstream_method: str | None = None

    @property
    def forwarded_method(self) -> str:
        return self.upstream_method or self.method

    @property
    def public_path(self) -> str:
        return f"/api/v1{self.path}"

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[^A-Za-z0-9]+", "_", self.path).strip("_")
        return f"{self.method.lower()}_{words}"

    def upstream_url_path(self, values: Mapping[str, Any]) -> str:
        if "{" not in self.upstream_path:
            return self.upstream_path
        return _PARAM.sub(lambda m: quote(str(values[m.group(1)]), safe=""), self.upstream_path)


def read(path: str, service: str, summary: str, *, role: Role = Role.VIEWER, timeout: float = 10.0) -> Route:
    return Route("GET", path, service, path, role, timeout, True, summary, _tag(path))


def write(
    path: str,
    service: str,
    summary: str,
    *,
    method: str = "POST",
    role: Role = Role.TRADER,
    timeout: float = 15.0,
    upstream_method: str | None = None,
) -> Route:
    return Route(method, path, service, path, role, timeout, False, summary, _tag(path), upstream_method)


def _tag(path: str) -> str:
    return path.strip("/").split("/", 1)[0]


COLLECTOR, PROCESSOR, TRAINER, INFERENCER, TRADER = (
    "data-collector",
    "data-processor",
    "model-trainer",
    "inferencer",
    "trader",
)

ROUTES: tuple[Route, ...] = (
    read("/data/market", COLLECTOR, "Latest snapshot per symbol: price, change, volume, book top", timeout=5.0),
    write("/data/collect", COLLECTOR, "Start a collection job"),
    read("/data/collect", COLLECTOR, "Collection jobs, newest first"),
    read("/data/collect/{job_id}", COLLECTOR, "One collection job: status and progress", timeout=5.0),
    read("/data/collect/{job_id}/events", COLLECTOR, "A collection job's events", timeout=5.0),
    write("/data/collect/{job_id}/cancel", COLLECTOR, "Cancel a collection job"),
    write("/data/process", PROCESSOR, "Recompute features (a background job)"),
    read("/data/process/{job_id}", PROCESSOR, "A processing job and its progress", timeout=5.0),
    read("/features", PROCESSOR, "Stored features of a symbol", timeout=30.0),
    read("/indicator/ma", PROCESSOR, "Simple or exponential moving average"),
    read("/indicator/rsi", PROCESSOR, "Relative strength index"),
    write("/model/train", TRAINER, "Start a training job"),
    read("/model/status/{job_id}", TRAINER, "A training job's status and progress", timeout=5.0),
    read("/model/models", TRAINER, "The model registry"),
    write("/model/models/{id}/promote", TRAINER, "Promote a model to production", role=Role.ADMIN),
    read("/model/models/{id}/regimes", TRAINER, "A model's market regime per symbol and day"),
    write("/inference/predict", INFERENCER, "Predict with the promoted model", timeout=10.0),
    read("/inference/model", INFERENCER, "The model being served", timeout=5.0),
    read("/inference/decisions", INFERENCER, "Decisions, newest first"),
    write("/trade/execute", TRADER, "Execute a trading decision (idempotent by key)", timeout=20.0),
    write("/trade/buy", TRADER, "Place a buy order", timeout=20.0),
    write("/trade/sell", TRADER, "Place a sell order", timeout=20.0),
    read("/trade/status/{order_id}", TRADER, "An order's status and fills", timeout=5.0),
    write("/trade/orders/{order_id}/cancel", TRADER, "Cancel an open order", timeout=20.0),
    read("/trade/history", TRADER, "Orders and fills, newest first"),
    read("/trade/positions", TRADER, "Current positions", timeout=5.0),
    read("/trade/pnl", TRADER, "Realised and unrealised P&L"),
    read("/trade/kill-switch", TRADER, "Whether the kill switch is engaged", timeout=5.0),
    write(
        "/trade/kill-switch", TRADER, "Engage or release the kill switch", method="PUT", role=Role.ADMIN,
        upstream_method="POST",
    ),
    write("/trade/kill-switch", TRADER, "Engage or release the kill switch (as PUT)", role=Role.ADMIN),
    write("/trade/reconcile", TRADER, "Reconcile with the broker now", role=Role.ADMIN, timeout=60.0),
    read("/trade/reconciliation", TRADER, "The latest reconciliation", timeout=5.0),
    read("/trade/instance", TRADER, "Whether the answering replica is the active writer", timeout=5.0),
    Route(
        "GET", "/dashboard/performance", TRADER, "/performance", Role.VIEWER, 15.0, True,
        "Equity curve, returns and drawdown", "dashboard",
    ),
    Route(
        "GET", "/dashboard/logs", TRADER, "/logs", Role.VIEWER, 10.0, True,
        "Trading activity log (orders, rejections, kill switch, errors)", "dashboard",
    ),
)  # fmt: skip


def check_table(routes: tuple[Route, ...]) -> None:
    """Refuse an inconsistent table at import: duplicates, parameter names that differ."""
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.method, route.path)
        if key in seen:
            raise ValueError(f"duplicate route {route.method} {route.path}")
        seen.add(key)
        if sorted(route.params) != sorted(_PARAM.findall(route.upstream_path)):
            raise ValueError(f"{route.method} {route.path}: path parameters differ from {route.upstream_path}")
        if route.retry and route.method != "GET":
            raise ValueError(f"{route.method} {route.path}: only reads may be retried")


check_table(ROUTES)
