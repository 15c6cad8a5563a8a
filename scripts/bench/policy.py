"""The benchmarks' steerable policy: a TorchScript LSTM with the inferencer's artifact contract.

The sign of the last bar's ``ret_1`` picks the action outright (a large fixed weight), so a
benchmark decides what the model will do: ``ret_1 > 0`` → the small long position (0.2 % of
equity), ``ret_1 < 0`` → flat. The LSTM still runs on every decision, as a real model's would.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

FEATURES = ["ret_1", "ret_5", "rsi_14", "vol_ratio", "macd"]
FEATURE_SET = "bench"


class LstmPolicy(torch.nn.Module):
    """A small policy with the artifact contract's signature: LSTM over the window, softmax head."""

    def __init__(self, features: int, hidden: int, actions: int) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(features, hidden, num_layers=1, batch_first=True)
        self.head = torch.nn.Linear(hidden + 1, actions)
        self.value = torch.nn.Linear(hidden + 1, 1)
        # The sign of the last bar's ``ret_1`` picks the action outright (the benchmark steers it).
        self.signal = torch.nn.Linear(features, actions, bias=False)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0, 5.0]))  # prefer the small long position
            self.signal.weight.zero_()
            self.signal.weight[:, 0] = torch.tensor([-10_000.0, 10_000.0])

    def forward(
        self, features: torch.Tensor, position: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out, (h2, c2) = self.lstm(torch.nan_to_num(features), (h, c))
        last = torch.cat([out[:, -1, :], position], dim=1)
        logits = self.head(last) + self.signal(torch.nan_to_num(features[:, -1, :]))
        return torch.softmax(logits, dim=1), self.value(last), h2, c2


def build_model(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(LstmPolicy(len(FEATURES), 32, 2)), str(folder / "policy.pt"))
    manifest = {
        "model_id": "00000000-0000-0000-0000-0000000000b1",
        "version": "bench-1",
        "feature_set": FEATURE_SET,
        "feature_names": FEATURES,
        "timeframe": "1m",
        "window": 1,
        "actions": [0.0, 0.002],
        "hidden_layers": 1,
        "hidden_size": 32,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder.as_uri()
