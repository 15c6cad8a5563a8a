"""The model registry: rows in ``models`` pointing at artifact directories, and promotion.

Promotion is explicit (API) or by rule after a job: the job's best model by validation
Sharpe is promoted when it beats buy & hold on the same validation period and, if there is
one, the incumbent's own validation Sharpe.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from model_trainer import repository as repo


def artifact_uri(path: Path) -> str:
    """``file:///abs/path/<model_id>/`` (trailing slash: it names a directory)."""
    return path.resolve().as_uri().rstrip("/") + "/"


def validation_sharpe(metrics: dict[str, Any], strategy: str = "agent") -> float | None:
    value = metrics.get("validation", {}).get(strategy, {}).get("sharpe")
    return None if value is None else float(value)


async def register_models(
    session: AsyncSession, job_id: uuid.UUID | None, models: Sequence[dict[str, Any]]
) -> list[repo.ModelRecord]:
    records = []
    for m in models:
        manifest = m["manifest"]
        record = repo.ModelRecord(
            id=uuid.UUID(manifest["model_id"]),
            version=manifest["version"],
            job_id=job_id,
            status="registered",
            created_at=datetime.fromisoformat(manifest["created_at"]),
            promoted_at=None,
            data_hash=manifest["data_hash"],
            symbols=manifest["symbols"],
            ranges=manifest["ranges"],
            feature_set=manifest["feature_set"],
            feature_names=manifest["feature_names"],
            timeframe=manifest["timeframe"],
            seed=manifest["seed"],
            config=manifest["config"],
            code_version=manifest["code_version"][:64],
            metrics=manifest["metrics"],
            artifact_uri=artifact_uri(Path(m["path"])),
        )
        await repo.add_model(session, record)
        records.append(record)
    return records


def promotion_verdict(candidate: repo.ModelRecord, incumbent: repo.ModelRecord | None) -> tuple[bool, str]:
    """Whether the rule promotes ``candidate`` over ``incumbent``, and why."""
    mine = validation_sharpe(candidate.metrics)
    hold = validation_sharpe(candidate.metrics, "buy_and_hold")
    if mine is None or hold is None:
        return False, "candidate has no validation metrics"
    if mine <= hold:
        return False, f"validation Sharpe {mine:.3f} does not beat buy & hold {hold:.3f}"
    if incumbent is not None:
        theirs = validation_sharpe(incumbent.metrics)
        if theirs is not None and mine <= theirs:
            return False, f"validation Sharpe {mine:.3f} does not beat the incumbent's {theirs:.3f}"
    return True, f"validation Sharpe {mine:.3f} beats buy & hold {hold:.3f} and the incumbent"


async def apply_promotion_rule(
    session: AsyncSession, candidates: Sequence[repo.ModelRecord], now: datetime
) -> repo.ModelRecord | None:
    scored = [(validation_sharpe(c.metrics), c) for c in candidates]
    scored = [(s, c) for s, c in scored if s is not None]
    if not scored:
        return None
    best = max(scored, key=lambda sc: sc[0] or 0.0)[1]
    ok, _ = promotion_verdict(best, await repo.promoted_model(session))
    if not ok:
        return None
    await repo.promote(session, best, now)
    return best
