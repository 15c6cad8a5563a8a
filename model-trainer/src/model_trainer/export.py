"""The self-contained TorchScript policy the inferencer loads (without importing this package).

``forward(features[B, W, F] raw, position[B, 1], h[L, B, H], c[L, B, H])
  -> (probs[B, A], value[B, 1], h, c)``: normalisation, GMM/KMeans regime probabilities, the
LSTM forecast and the actor-critic all happen inside, exactly as the trainer composed them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from model_trainer.a3c import ActorCritic
from model_trainer.forecaster import Forecaster
from model_trainer.pipeline import CLIP, REGIME_COLUMNS, Scaler
from model_trainer.regimes import RegimeModel, TorchRegimes


class ExportedPolicy(nn.Module):
    def __init__(self, scaler: Scaler, regimes: RegimeModel, forecaster: Forecaster, agent: ActorCritic) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(scaler.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(scaler.std, dtype=torch.float32))
        self.register_buffer("regime_columns", torch.tensor(REGIME_COLUMNS, dtype=torch.long))
        self.clip = CLIP
        self.mean: Tensor
        self.std: Tensor
        self.regime_columns: Tensor
        self.regimes = TorchRegimes(regimes)
        self.forecaster = forecaster
        self.agent = agent

    def forward(
        self, features: Tensor, position: Tensor, h: Tensor, c: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z = torch.clamp((features - self.mean) / self.std, -self.clip, self.clip)
        z = torch.nan_to_num(z, nan=0.0)
        regime = self.regimes(z[:, -1, :].index_select(1, self.regime_columns))
        forecast = self.forecaster(z)
        obs = torch.cat([z.reshape(z.shape[0], -1), regime, forecast, position], dim=1)
        probs, value, h2, c2 = self.agent(obs, h, c)
        return probs, value, h2, c2


def export_policy(
    path: Path, scaler: Scaler, regimes: RegimeModel, forecaster: Forecaster, agent: ActorCritic
) -> torch.jit.ScriptModule:
    module = torch.jit.script(ExportedPolicy(scaler, regimes, forecaster.eval(), agent.eval()))
    torch.jit.save(module, str(path))
    return module
