"""Rating-prediction metrics."""

from __future__ import annotations

import numpy as np


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error."""
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error."""
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.abs(diff)))
