"""The API from a training request to a registered, promotable model; cancel; restart; errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import torch

from model_trainer import repository as repo
from model_trainer.jobs import JobRunner

from .conftest import App, tiny_config


async def test_training_job_registers_promotable_models_with_a_self_contained_policy(
    app: App, market_dir: Path
) -> None:
    response = await app.client.post("/model/train", json=tiny_config(market_dir))
    assert response.status_code == 202
    job_id = response.json()["job_id"]

    status = await app.wait(job_id, ("succeeded", "failed", "cancelled"))
    assert status["status"] == "succeeded", status["error"]
    progress = status["progress"]
    assert progress["steps"] == progress["steps_total"] == 1600  # type: ignore[index]
    curves = status["curves"]
    assert curves["reward"] and curves["entropy"] and curves["val_sharpe"]  # type: ignore[index]
    summary = status["summary"]
    assert set(summary["test"]) == {"agent", "buy_and_hold", "ma_crossover", "rsi_rule", "random"}  # type: ignore[index]
    assert {"mean", "std"} <= set(summary["test"]["agent"]["sharpe"])  # type: ignore[index]

    models = (await app.client.get("/model/models")).json()
    assert len(models) == 2 and {m["seed"] for m in models} == {0, 1}
    model = models[0]
    folder = Path(urlparse(model["artifact_uri"]).path)
    assert model["artifact_uri"].startswith("file:///") and folder.name == model["id"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in (
        "model_id",
        "version",
        "created_at",
        "feature_set",
        "feature_names",
        "timeframe",
        "window",
        "actions",
        "hidden_layers",
        "hidden_size",
        "data_hash",
        "seed",
        "config",
        "code_version",
        "metrics",
    ):
        assert key in manifest
    policy = torch.jit.load(str(folder / "policy.pt"))
    b, w, f = 3, manifest["window"], len(manifest["feature_names"])
    h = torch.zeros(manifest["hidden_layers"], b, manifest["hidden_size"])
    probs, value, h2, _ = policy(torch.rand(b, w, f) * 0.1, torch.zeros(b, 1), h, h.clone())
    assert probs.shape == (b, len(manifest["actions"])) and value.shape == (b, 1) and h2.shape == h.shape
    assert torch.allclose(probs.sum(dim=1), torch.ones(b))

    regimes = (await app.client.get(f"/model/models/{model['id']}/regimes", params={"symbol": "005930"})).json()
    assert regimes and all(r["symbol"] == "005930" for r in regimes)

    target = next(m for m in models if m["status"] != "promoted")
    promoted = await app.client.post(f"/model/models/{target['id']}/promote")
    assert promoted.status_code == 200 and promoted.json()["model"]["status"] == "promoted"
    again = await app.client.post(f"/model/models/{target['id']}/promote")
    assert again.status_code == 409
    for _ in range(50):
        if any(str(e.payload.model_id) == target["id"] for e in app.promoted):  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    assert any(e.kind == "model.promoted.v1" and str(e.payload.model_id) == target["id"] for e in app.promoted)  # type: ignore[union-attr]
    statuses = [m["status"] for m in (await app.client.get("/model/models")).json()]
    assert statuses.count("promoted") == 1


async def test_cancel_stops_a_running_job_visibly(app: App, market_dir: Path) -> None:
    config = tiny_config(market_dir, total_steps=10_000_000, eval_every_steps=1_000_000)
    job_id = (await app.client.post("/model/train", json=config)).json()["job_id"]
    assert (await app.wait(job_id, ("running",), timeout=30))["status"] == "running"
    response = await app.client.post(f"/model/jobs/{job_id}/cancel")
    assert response.status_code == 200
    status = await app.wait(job_id, ("cancelled", "failed", "succeeded"), timeout=60)
    assert status["status"] == "cancelled"
    assert (await app.client.post(f"/model/jobs/{job_id}/cancel")).status_code == 409


async def test_restart_requeues_or_fails_interrupted_jobs(app: App) -> None:
    now = datetime.now(UTC)
    ids = [uuid.uuid4(), uuid.uuid4()]
    async with app.runtime.sessionmaker.begin() as session:
        for job_id, attempts in zip(ids, (1, 3), strict=True):
            await repo.create_job(session, job_id, {"split": {}}, "api", now)
            await repo.update_job(session, job_id, status="running", attempts=attempts)
    await JobRunner(app.runtime, app.settings).recover()
    async with app.runtime.sessionmaker() as session:
        resumed, exhausted = [await repo.get_job(session, i) for i in ids]
    assert resumed is not None and resumed.status == "queued" and resumed.interrupted_at is not None
    assert exhausted is not None and exhausted.status == "failed" and "interrupted" in (exhausted.error or "")


async def test_bad_requests_are_4xx_with_clear_messages(app: App, market_dir: Path, tmp_path: Path) -> None:
    assert (await app.client.get(f"/model/status/{uuid.uuid4()}")).status_code == 404
    assert (await app.client.get("/model/status/not-a-uuid")).status_code == 422
    assert (await app.client.post(f"/model/models/{uuid.uuid4()}/promote")).status_code == 404
    bad_split = tiny_config(market_dir)
    bad_split["split"] = {**bad_split["split"], "val_start": "2010-01-01"}  # type: ignore[dict-item]
    assert (await app.client.post("/model/train", json=bad_split)).status_code == 422
    outside = tiny_config(tmp_path)
    response = await app.client.post("/model/train", json=outside)
    assert response.status_code == 422 and "allowed data dir" in response.json()["message"]
    short_embargo = {**tiny_config(market_dir), "embargo": 3}
    assert (await app.client.post("/model/train", json=short_embargo)).status_code == 422
    assert (await app.client.get("/model/models", params={"status": "bogus"})).status_code == 422
