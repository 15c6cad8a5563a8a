"""Loading a model version: ``manifest.json`` + ``policy.pt`` (TorchScript) in one directory.

The contract (written by the model-trainer, read here without importing it):
``forward(features[B, W, F] float32 raw, position[B, 1], h[L, B, H], c[L, B, H])
-> (probs[B, A], value[B, 1], h, c)``; the manifest names the features in order, the window W,
the A target-exposure actions and the LSTM shape. Loading is blocking: call it in an executor.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import InvalidInput, Operational


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())

    model_id: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    feature_set: str = Field(max_length=64)
    feature_names: list[str] = Field(min_length=1)
    timeframe: str
    window: int = Field(ge=1, le=10_000)
    actions: list[float] = Field(min_length=1)
    hidden_layers: int = Field(ge=1, le=16)
    hidden_size: int = Field(ge=1, le=65_536)


@dataclass(frozen=True)
class Prediction:
    probabilities: list[float]
    action_index: int
    target_exposure: float
    confidence: float
    value: float


@dataclass(eq=False)
class LoadedModel:
    """One loaded model version; immutable once loaded (state lives with the engine)."""

    manifest: Manifest
    module: torch.jit.ScriptModule
    uri: str

    @property
    def version(self) -> str:
        return self.manifest.version

    def zero_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.manifest.hidden_layers, 1, self.manifest.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def matrix(self, rows: list[dict[str, float | None]]) -> torch.Tensor:
        """The last W rows as a [1, W, F] float32 tensor; a missing value is NaN (the policy masks it)."""
        names = self.manifest.feature_names
        window = rows[-self.manifest.window :]
        values = [[_number(row.get(name)) for name in names] for row in window]
        return torch.tensor([values], dtype=torch.float32)

    def forward(
        self, rows: list[dict[str, float | None]], position: float, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[Prediction, torch.Tensor, torch.Tensor]:
        """One forward pass (blocking, CPU): the prediction and the next recurrent state."""
        with torch.inference_mode():
            probs, value, h2, c2 = self.module(self.matrix(rows), torch.tensor([[position]], dtype=torch.float32), h, c)
        p = [float(x) for x in probs[0].tolist()]
        if len(p) != len(self.manifest.actions):
            raise Operational(
                f"model {self.version} gave {len(p)} probabilities for {len(self.manifest.actions)} actions"
            )
        best = max(range(len(p)), key=p.__getitem__)
        prediction = Prediction(
            probabilities=p,
            action_index=best,
            target_exposure=float(self.manifest.actions[best]),
            confidence=p[best],
            value=float(value.reshape(-1)[0]),
        )
        return prediction, h2.detach().clone(), c2.detach().clone()


def _number(value: float | None) -> float:
    if value is None:
        return math.nan
    return float(value)


def artifact_path(uri: str) -> Path:
    """A model directory from ``file://…`` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a bare path (or a Windows drive)
        return Path(uri)
    raise InvalidInput(f"unsupported artifact URI scheme {parsed.scheme!r}: use a path or file://")


def load_model(uri: str) -> LoadedModel:
    """Read and check a model directory (blocking). Raises ``Operational`` when it is unusable."""
    folder = artifact_path(uri)
    try:
        manifest = Manifest.model_validate(json.loads((folder / "manifest.json").read_text()))
        with warnings.catch_warnings():
            # TorchScript is the artifact contract with the trainer, deprecation notwithstanding.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(folder / "policy.pt"), map_location="cpu")  # type: ignore[no-untyped-call]
    except (OSError, ValueError, ValidationError, RuntimeError) as e:
        raise Operational(f"cannot load model at {folder}: {type(e).__name__}: {str(e)[:200]}") from e
    module.eval()
    model = LoadedModel(manifest=manifest, module=module, uri=uri)
    # A dry run catches a manifest that does not match the module before it serves anything.
    h, c = model.zero_state()
    try:
        model.forward([{}] * manifest.window, 0.0, h, c)
    except (RuntimeError, Operational) as e:
        raise Operational(f"model at {folder} does not match its manifest: {str(e)[:200]}") from e
    return model


def manifest_summary(model: LoadedModel) -> dict[str, Any]:
    m = model.manifest
    return {
        "model_id": m.model_id,
        "version": m.version,
        "feature_set": m.feature_set,
        "timeframe": m.timeframe,
        "window": m.window,
        "actions": m.actions,
        "features": len(m.feature_names),
        "uri": model.uri,
    }
