"""Frame-to-media pooling of frame-level feature vectors."""

from __future__ import annotations

import numpy as np

POOLINGS = ("mean", "max", "std", "meanstd")


def pool(vectors: np.ndarray, method: str) -> np.ndarray:
    """Pool (T, D) frame vectors into one media vector.

    'mean', 'max' and 'std' give D values; 'meanstd' gives 2D (mean then std).
    With no frames (T = 0) the result is all-NaN, so a downstream imputer can fill it.
    """
    if method not in POOLINGS:
        raise ValueError(f"unknown pooling '{method}'; allowed: {', '.join(POOLINGS)}")
    vectors = np.asarray(vectors, dtype=np.float32)
    width = vectors.shape[1] if vectors.ndim == 2 else 0
    out_dim = 2 * width if method == "meanstd" else width
    if vectors.ndim != 2 or len(vectors) == 0:
        return np.full(out_dim, np.nan, dtype=np.float32)
    if method == "mean":
        return vectors.mean(axis=0)
    if method == "max":
        return vectors.max(axis=0)
    if method == "std":
        return vectors.std(axis=0)
    return np.concatenate([vectors.mean(axis=0), vectors.std(axis=0)])
