"""The supervised LSTM: next-horizon log return and direction from a window of features.

Its two outputs — the predicted return (in units of the training target's standard
deviation) and the probability of a rise — are part of the agent's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn


class Forecaster(nn.Module):
    """LSTM over ``[B, W, F]`` normalised features → ``[B, 2]`` (scaled return, P(up))."""

    def __init__(self, n_features: int, hidden: int = 16) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def raw(self, z: Tensor) -> Tensor:
        out, _ = self.lstm(z)
        result: Tensor = self.head(out[:, -1, :])
        return result

    def forward(self, z: Tensor) -> Tensor:
        raw = self.raw(z)
        return torch.stack([raw[:, 0], torch.sigmoid(raw[:, 1])], dim=1)


@dataclass(frozen=True)
class ForecastReport:
    train_loss: float
    train_direction_accuracy: float
    samples: int


def windows_at(features: NDArray[np.float32], idx: NDArray[np.int64], window: int) -> NDArray[np.float32]:
    offsets = np.arange(-window + 1, 1, dtype=np.int64)
    return np.asarray(features[idx[:, None] + offsets[None, :]], dtype=np.float32)


def fit_forecaster(
    features: NDArray[np.float32],
    targets: NDArray[np.float64],
    train_idx: NDArray[np.int64],
    *,
    window: int,
    hidden: int = 16,
    epochs: int = 3,
    batch_size: int = 256,
    lr: float = 3e-3,
    max_samples: int = 20_000,
    seed: int = 0,
) -> tuple[Forecaster, ForecastReport]:
    """Train on windows ending at ``train_idx`` (whose targets lie inside the training window)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    idx = train_idx if len(train_idx) <= max_samples else rng.choice(train_idx, max_samples, replace=False)
    x = torch.from_numpy(windows_at(features, idx, window))
    y_raw = targets[idx]
    scale = float(np.std(y_raw)) or 1.0
    y = torch.from_numpy((y_raw / scale).astype(np.float32))
    up = torch.from_numpy((y_raw > 0).astype(np.float32))
    model = Forecaster(features.shape[1], hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    bce = nn.BCEWithLogitsLoss()
    loss_value = float("nan")
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(idx)))
        total, batches = 0.0, 0
        for start in range(0, len(idx), batch_size):
            b = order[start : start + batch_size]
            raw = model.raw(x[b])
            loss = nn.functional.mse_loss(raw[:, 0], y[b]) + bce(raw[:, 1], up[b])
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            total += loss.item()
            batches += 1
        loss_value = total / max(batches, 1)
    with torch.no_grad():
        accuracy = float(((model(x)[:, 1] > 0.5).float() == up).float().mean())
    return model.eval(), ForecastReport(loss_value, accuracy, len(idx))


def forecast_all(model: Forecaster, features: NDArray[np.float32], idx: NDArray[np.int64], window: int) -> Any:
    """Forecasts ``[len(idx), 2]`` for windows ending at ``idx`` (batched, no grad)."""
    out = np.zeros((len(idx), 2), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(idx), 4096):
            chunk = idx[start : start + 4096]
            out[start : start + len(chunk)] = model(torch.from_numpy(windows_at(features, chunk, window))).numpy()
    return out
