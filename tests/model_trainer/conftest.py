"""Fixtures of the model-trainer tests: a synthetic CSV market and a running app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from common.clock import SystemClock
from common.contracts import Envelope
from common.db import migrate
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from model_trainer.app import create_app
from model_trainer.settings import ModelTrainerSettings


def write_market(folder: Path, symbols: tuple[str, ...] = ("005930", "000660", "035420"), days: int = 1400) -> Path:
    """Seeded random-walk daily bars on business days from 2008, one CSV per symbol."""
    folder.mkdir(parents=True, exist_ok=True)
    calendar = [d for d in (date(2008, 1, 2) + timedelta(days=i) for i in range(days * 2)) if d.weekday() < 5][:days]
    for k, symbol in enumerate(symbols):
        rng = np.random.default_rng(100 + k)
        close = 20_000 * np.exp(np.cumsum(rng.normal(0.0003, 0.018, days)))
        open_ = close * np.exp(rng.normal(0, 0.006, days))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.006, days)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.006, days)))
        volume = rng.integers(10_000, 200_000, days)
        lines = ["date,open,high,low,close,volume"]
        for i, d in enumerate(calendar):
            lines.append(f"{d},{int(open_[i])},{int(high[i])},{int(low[i])},{int(close[i])},{volume[i]}")
        (folder / f"{symbol}.csv").write_text("\n".join(lines) + "\n")
    return folder


def tiny_config(path: Path, **a3c: object) -> dict[str, object]:
    """A job that trains in seconds: 2 workers, a few hundred steps, 2 seeds."""
    return {
        "source": {"kind": "csv", "path": str(path)},
        "split": {
            "train_end": "2010-12-31",
            "val_start": "2011-01-01",
            "val_end": "2011-12-31",
            "test_start": "2012-01-01",
            "test_end": "2013-12-31",
        },
        "window": 10,
        "forecaster": {"epochs": 1, "max_samples": 500, "hidden": 8},
        "a3c": {
            "workers": 2,
            "envs_per_worker": 4,
            "n_steps": 10,
            "total_steps": 800,
            "eval_every_steps": 400,
            "hidden_size": 16,
            "episode_length": 64,
            **a3c,
        },
        "seeds": [0, 1],
    }


@pytest.fixture(scope="session")
def market_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_market(tmp_path_factory.mktemp("krx") / "daily")


@dataclass
class App:
    runtime: Runtime
    client: httpx.AsyncClient
    settings: ModelTrainerSettings
    promoted: list[Envelope] = field(default_factory=list)

    async def wait(self, job_id: str, states: tuple[str, ...], timeout: float = 150.0) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            body: dict[str, object] = (await self.client.get(f"/model/status/{job_id}")).json()
            if body["status"] in states or loop.time() > deadline:
                return body
            await asyncio.sleep(0.3)


@pytest.fixture
async def app(tmp_path: Path, market_dir: Path) -> AsyncIterator[App]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mt.db'}"
    await migrate(url)
    settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=url, migrate_on_start=False)  # type: ignore[arg-type]
    runtime = Runtime.from_settings(settings, clock=SystemClock())
    service_settings = ModelTrainerSettings(artifact_root=tmp_path / "models", data_dirs=[market_dir.parent])
    async with runtime:
        holder = App(runtime, None, service_settings)  # type: ignore[arg-type]

        async def capture(envelope: Envelope) -> None:
            holder.promoted.append(envelope)

        await runtime.bus.subscribe("test.promotions", ["model.promoted"], capture)
        fastapi_app = create_app(runtime, service_settings)
        async with fastapi_app.router.lifespan_context(fastapi_app):
            transport = httpx.ASGITransport(app=fastapi_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mt") as client:
                holder.client = client
                yield holder
