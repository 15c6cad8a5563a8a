"""What each page shows, gathered from the gateway: shared by the first render and live updates.

A page is made of panels; a panel whose service is down or refuses shows its own message
while the others still show their data. Only the gateway itself not answering, or the
session ending, stops the whole page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Generic, TypeVar

from common.clock import KST
from web_interface.gateway import Gateway, GatewayError, GatewayUnreachable, NotLoggedIn
from web_interface.session import Session

T = TypeVar("T")


@dataclass
class Panel(Generic[T]):
    """One panel's data, or why it has none."""

    data: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def panel(call: Awaitable[T]) -> Panel[T]:
    try:
        return Panel(data=await call)
    except (NotLoggedIn, GatewayUnreachable):
        raise
    except GatewayError as exc:
        return Panel(error=exc.message)


@dataclass
class Regime:
    model_version: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None


@dataclass
class Dashboard:
    pnl: Panel[dict[str, Any]]
    positions: Panel[list[dict[str, Any]]]
    orders: Panel[dict[str, Any]]
    kill_switch: Panel[dict[str, Any]]
    performance: Panel[dict[str, Any]]
    regime: Panel[Regime]
    today: str
    watchlist: list[str]

    def charts(self) -> dict[str, Any]:
        """The chart series (the browser draws them; amounts stay whole KRW)."""
        points = (self.performance.data or {}).get("points", [])
        return {
            "labels": [p["at"] for p in points],
            "equity": [p["equity"] for p in points],
            "benchmark": [p.get("benchmark") for p in points],
            "drawdown": [round(-100 * float(p.get("drawdown") or 0), 3) for p in points],
            "benchmark_symbols": (self.performance.data or {}).get("benchmark_symbols", []),
        }


async def market_today(gateway: Gateway, session: Session) -> datetime:
    """Midnight KST of the broker's current day: the trader's clock (a simulator's, in all-in-one
    mode) may differ from the wall clock, and its latest reconciliation says which day it is."""
    try:
        latest = await gateway.get("/trade/reconciliation", token=session.token)
        at = datetime.fromisoformat(latest["at"]) if latest and latest.get("at") else datetime.now(KST)
    except (NotLoggedIn, GatewayUnreachable):
        raise
    except (GatewayError, ValueError, TypeError):
        at = datetime.now(KST)
    return datetime.combine(at.astimezone(KST).date(), time(0), tzinfo=KST)


async def promoted_regime(gateway: Gateway, session: Session) -> Regime:
    models = await gateway.get("/model/models", token=session.token, params={"status": "promoted"})
    if not models:
        return Regime(note="No model promoted yet.")
    model = models[0]
    symbols: list[str] = list(model.get("symbols") or [])[:6]
    results = await asyncio.gather(
        *(
            panel(gateway.get(f"/model/models/{model['id']}/regimes", token=session.token,
                              params={"symbol": s, "limit": 1}))
            for s in symbols
        )
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    errors = [r.error for r in results if r.error]
    for result in results:
        for row in result.data or []:
            probabilities = row.get("probabilities") or []
            confidence = probabilities[row["regime"]] if 0 <= row["regime"] < len(probabilities) else None
            rows.append({**row, "confidence": confidence})
    note = None if rows else (errors[0] if errors else "The promoted model has no regimes stored.")
    return Regime(model_version=model.get("version"), rows=rows, note=note)


async def dashboard(gateway: Gateway, session: Session) -> Dashboard:
    token = session.token
    settings, today = await asyncio.gather(panel(gateway.get("/dashboard/settings", token=token)),
                                           market_today(gateway, session))  # fmt: skip
    watchlist: list[str] = list((settings.data or {}).get("watchlist", []))
    params: dict[str, Any] = {"points": 300}
    if watchlist:
        params["symbols"] = watchlist[:50]
    since = today.isoformat()
    until = (today + timedelta(days=1)).isoformat()
    pnl, positions, orders, kill, performance, regime = await asyncio.gather(
        panel(gateway.get("/trade/pnl", token=token)),
        panel(gateway.get("/trade/positions", token=token)),
        panel(gateway.get("/trade/history", token=token, params={"since": since, "until": until, "limit": 100})),
        panel(gateway.get("/trade/kill-switch", token=token)),
        panel(gateway.get("/dashboard/performance", token=token, params=params)),
        panel(promoted_regime(gateway, session)),
    )
    return Dashboard(
        pnl=pnl,
        positions=positions,
        orders=orders,
        kill_switch=kill,
        performance=performance,
        regime=regime,
        today=today.date().isoformat(),
        watchlist=watchlist,
    )


# --- training -------------------------------------------------------------------------------

STRATEGIES = ("agent", "buy_and_hold", "ma_crossover", "rsi_rule", "random")
REPORT_METRICS = ("total_return", "sharpe", "max_drawdown", "hit_rate", "turnover")


@dataclass
class JobView:
    job: dict[str, Any]
    models: list[dict[str, Any]]

    @property
    def finished(self) -> bool:
        return self.job.get("status") in ("succeeded", "failed", "cancelled")

    @property
    def percent(self) -> float:
        progress = self.job.get("progress") or {}
        total = progress.get("steps_total") or 0
        if self.job.get("status") == "succeeded":
            return 100.0
        return min(100.0, 100.0 * (progress.get("steps") or 0) / total) if total else 0.0

    def curves(self) -> dict[str, Any]:
        curves = self.job.get("curves") or {}
        return {
            "steps": curves.get("steps", []),
            "seed": curves.get("seed", []),
            "reward": curves.get("reward", []),
            "val_steps": curves.get("val_steps", []),
            "val_seed": curves.get("val_seed", []),
            "val_sharpe": curves.get("val_sharpe", []),
        }

    def per_regime(self) -> list[dict[str, Any]]:
        """Per model (one per seed) and regime: the agent against buy & hold on the test range."""
        rows: list[dict[str, Any]] = []
        for model in self.models:
            test = (model.get("metrics") or {}).get("test") or {}
            agent = (test.get("agent") or {}).get("per_regime") or {}
            hold = (test.get("buy_and_hold") or {}).get("per_regime") or {}
            for regime in sorted(set(agent) | set(hold), key=lambda r: int(r) if r.isdigit() else 0):
                rows.append(
                    {"model": model.get("version"), "seed": model.get("seed"), "regime": regime,
                     "agent": agent.get(regime, {}), "buy_and_hold": hold.get(regime, {})}
                )  # fmt: skip
        return rows

    def per_fold(self) -> list[dict[str, Any]]:
        """Per fold, when the trainer reports folds (``summary`` is over all folds and seeds)."""
        folds = (self.job.get("summary") or {}).get("folds")
        return list(folds) if isinstance(folds, list) else []


async def job_view(gateway: Gateway, session: Session, job_id: str) -> JobView:
    job = await gateway.get(f"/model/status/{job_id}", token=session.token)
    models: list[dict[str, Any]] = []
    if job.get("model_ids"):
        listed = await panel(gateway.get("/model/models", token=session.token))
        wanted = set(job["model_ids"])
        models = [m for m in listed.data or [] if str(m.get("id")) in wanted]
    return JobView(job=job, models=models)
