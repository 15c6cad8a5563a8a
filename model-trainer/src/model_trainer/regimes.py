"""Market regimes: scikit-learn clustering fit on the training window only, applied forward.

Clustering runs on the (training-scaler normalised) rolling return, volatility, volume and
trend features. The fitted parameters are kept as plain arrays so that the exported policy can
compute the same probabilities in torch (``TorchRegimes``) without scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.cluster import KMeans  # type: ignore[import-untyped]
from sklearn.mixture import GaussianMixture  # type: ignore[import-untyped]
from torch import Tensor, nn

RegimeMethod = Literal["gmm", "kmeans"]


@dataclass(frozen=True)
class RegimeModel:
    """A fitted clustering: GMM (full covariance) or KMeans (hard, one-hot probabilities)."""

    method: RegimeMethod
    means: NDArray[np.float64]  # [K, D] component means or centroids
    precision_cholesky: NDArray[np.float64]  # [K, D, D] (identity for KMeans)
    log_weights: NDArray[np.float64]  # [K]

    @property
    def k(self) -> int:
        return int(self.means.shape[0])

    def proba(self, x: NDArray[Any]) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        if self.method == "kmeans":
            distances = ((x[:, None, :] - self.means[None]) ** 2).sum(axis=2)
            return np.asarray(np.eye(self.k)[distances.argmin(axis=1)], dtype=np.float64)
        log_p = _gmm_log_prob(x, self.means, self.precision_cholesky) + self.log_weights[None, :]
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def labels(self, x: NDArray[Any]) -> NDArray[np.int64]:
        return np.asarray(self.proba(x).argmax(axis=1), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "means": self.means.tolist(),
            "precision_cholesky": self.precision_cholesky.tolist(),
            "log_weights": self.log_weights.tolist(),
        }


def _gmm_log_prob(x: NDArray[np.float64], means: NDArray[np.float64], prec_chol: NDArray[np.float64]) -> Any:
    d = x.shape[1]
    out = np.empty((x.shape[0], means.shape[0]))
    for k in range(means.shape[0]):
        y = (x - means[k]) @ prec_chol[k]
        log_det = np.log(np.diag(prec_chol[k])).sum()
        out[:, k] = -0.5 * (d * math.log(2 * math.pi) + (y**2).sum(axis=1)) + log_det
    return out


def fit_regimes(
    x_train: NDArray[Any], *, method: RegimeMethod = "gmm", k: int = 3, seed: int = 0, max_samples: int = 20_000
) -> RegimeModel:
    """Fit on training rows only (subsampled to ``max_samples``, deterministically)."""
    x = np.asarray(x_train, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < k * 10:
        raise ValueError(f"too few training rows ({len(x)}) to fit {k} regimes")
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    if method == "kmeans":
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
        centers = np.asarray(km.cluster_centers_, dtype=np.float64)
        # order regimes by their mean return so ids read the same across folds and seeds
        order = np.argsort(centers[:, 0])
        d = x.shape[1]
        return RegimeModel("kmeans", centers[order], np.stack([np.eye(d)] * k), np.zeros(k))
    gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed, reg_covar=1e-4).fit(x)
    order = np.argsort(gmm.means_[:, 0])
    return RegimeModel(
        "gmm",
        np.asarray(gmm.means_, dtype=np.float64)[order],
        np.asarray(gmm.precisions_cholesky_, dtype=np.float64)[order],
        np.log(np.asarray(gmm.weights_, dtype=np.float64))[order],
    )


class TorchRegimes(nn.Module):
    """``RegimeModel.proba`` in torch: GMM posterior (or KMeans one-hot) from stored parameters."""

    def __init__(self, model: RegimeModel) -> None:
        super().__init__()
        d = model.means.shape[1]
        self.hard = model.method == "kmeans"
        self.register_buffer("means", torch.tensor(model.means, dtype=torch.float32))
        self.register_buffer("prec_chol", torch.tensor(model.precision_cholesky, dtype=torch.float32))
        log_det = np.log(np.diagonal(model.precision_cholesky, axis1=1, axis2=2)).sum(axis=1)
        constant = model.log_weights + log_det - 0.5 * d * math.log(2 * math.pi)
        self.register_buffer("constant", torch.tensor(constant, dtype=torch.float32))
        self.k = model.k
        self.means: Tensor
        self.prec_chol: Tensor
        self.constant: Tensor

    def forward(self, x: Tensor) -> Tensor:
        centred = x.unsqueeze(1) - self.means.unsqueeze(0)  # [B, K, D]
        if self.hard:
            nearest = (centred**2).sum(dim=2).argmin(dim=1)
            return torch.nn.functional.one_hot(nearest, self.k).to(x.dtype)
        y = torch.einsum("bkd,kde->bke", centred, self.prec_chol)
        log_p = self.constant.unsqueeze(0) - 0.5 * (y**2).sum(dim=2)
        return torch.softmax(log_p, dim=1)
