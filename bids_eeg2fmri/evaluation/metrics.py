"""Metrics of synthesized against observed BOLD: plain functions on arrays."""

from __future__ import annotations

import numpy as np


def voxelwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last (time) axis, for every voxel.

    ``r = sum((a - mean a)(b - mean b)) / sqrt(sum (a - mean a)^2 sum (b - mean b)^2)``,
    NaN where either series is constant. Shapes ``(..., t)`` -> ``(...)``; float64.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt(np.sum(a**2, axis=-1) * np.sum(b**2, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, np.sum(a * b, axis=-1) / denom, np.nan)
