"""The trainer's feature set, ``mt-ohlcv-v1``.

The computation lives in ``common.features.mt_ohlcv`` so that the data-processor publishes
exactly the numbers a model was trained on; this module keeps the trainer's import path.
"""

from __future__ import annotations

from common.features.mt_ohlcv import (
    FEATURE_NAMES,
    FEATURE_SET,
    LOOKBACK,
    REGIME_FEATURES,
    FeatureRow,
    compute_features,
    feature_matrix,
)

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SET",
    "LOOKBACK",
    "REGIME_FEATURES",
    "FeatureRow",
    "compute_features",
    "feature_matrix",
]
