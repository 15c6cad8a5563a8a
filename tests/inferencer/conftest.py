"""Tiny TorchScript policies that honour the model-artifact contract, and a running inferencer.

``TinyPolicy`` always prefers one action, and reports in ``value`` how many forward passes its
recurrent state has seen since it was last reset (h counts up by one per pass) — which is what
the swap and day-boundary tests need to see. ``slow`` makes a forward pass take a while.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from common.contracts import Envelope, FeaturesV1
from common.runtime import Runtime
from common.settings import Mode, RuntimeSettings
from inferencer.app import create_app
from inferencer.service import InferencerService
from inferencer.settings import InferencerSettings

FEATURES = ["ret_1", "rsi_14", "vol_ratio"]
ACTIONS = [0.0, 0.05, 0.1, 0.2]


class TinyPolicy(torch.nn.Module):
    def __init__(self, actions: int, favoured: int, slow: int) -> None:
        super().__init__()
        self.actions = actions
        self.favoured = favoured
        self.slow = slow

    def forward(
        self, features: torch.Tensor, position: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        work = torch.ones(48, 48) / 48.0
        for _ in range(self.slow):
            work = torch.tanh(work @ work)
        logits = torch.zeros(features.shape[0], self.actions)
        logits[:, self.favoured] = 4.0 + work[0, 0] * 0.0 + torch.nan_to_num(features).sum() * 0.0
        probs = torch.softmax(logits, dim=1)
        value = h[-1, :, 0:1].clone()
        return probs, value, h + 1.0, c


def make_model(
    root: Path, version: str, *, favoured: int, window: int = 2, timeframe: str = "1m", slow: int = 0
) -> str:
    """A model directory (manifest.json + policy.pt); returns its file:// URI."""
    folder = root / f"model-{version}"
    folder.mkdir(parents=True)
    torch.jit.save(torch.jit.script(TinyPolicy(len(ACTIONS), favoured, slow)), str(folder / "policy.pt"))
    manifest: dict[str, Any] = {
        "model_id": f"00000000-0000-0000-0000-00000000000{len(version) % 10}",
        "version": version,
        "feature_set": "core-v1",
        "feature_names": FEATURES,
        "timeframe": timeframe,
        "window": window,
        "actions": ACTIONS,
        "hidden_layers": 1,
        "hidden_size": 4,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder.as_uri()


def features(symbol: str, ts: datetime, close: int = 6_490, timeframe: str = "1m") -> FeaturesV1:
    return FeaturesV1(
        symbol=symbol,
        timeframe=timeframe,  # type: ignore[arg-type]
        ts=ts,
        close=close,
        values={"ret_1": 0.001, "rsi_14": 55.0, "vol_ratio": None},
        feature_set="core-v1",
    )


def envelope(payload: Any) -> Envelope:
    return Envelope(producer="test", payload=payload)


class InferencerHarness:
    def __init__(self, app: Any, runtime: Runtime, http: httpx.AsyncClient) -> None:
        self.app = app
        self.runtime = runtime
        self.http = http

    @property
    def service(self) -> InferencerService:
        service: InferencerService = self.app.state.inferencer
        return service


@pytest.fixture
async def inferencer(sqlite_url: str, tmp_path: Path) -> AsyncIterator[InferencerHarness]:
    settings = InferencerSettings(model_uri=make_model(tmp_path, "v1", favoured=2), trade=False)
    runtime_settings = RuntimeSettings(mode=Mode.ALLINONE, database_url=sqlite_url)  # type: ignore[arg-type]
    async with Runtime.from_settings(runtime_settings) as runtime:
        app = create_app(runtime, settings=settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://inferencer") as http:
                yield InferencerHarness(app, runtime, http)
