"""Frame-to-media pooling: statistics over a media's (T, D) frame vectors, fitted encodings
(Fisher vectors, VLAD; see :mod:`raypipe.classify.encoding`) and fixed-length window sequences for
sequence heads.

Every pooling is a :class:`Pooler` with ``fit`` (a no-op unless it learns a codebook from the
training split's frames) and ``encode`` ((T, D) frames -> one media vector). A fitted pooler is
saved with the model that was trained on its output, so prediction pools new media identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

#: Statistics poolings (no fitting); 'pct' gives the 10th, 50th and 90th percentiles.
STAT_POOLINGS = ("mean", "max", "std", "meanstd", "pct")
#: Encodings whose codebook is fitted on the training split's frames.
FITTED_POOLINGS = ("fisher", "vlad")
#: Window sequences for sequence heads (LSTM, GRU, attention, NetVLAD).
SEQUENCE_POOLINGS = ("seq",)
POOLINGS = STAT_POOLINGS + FITTED_POOLINGS + SEQUENCE_POOLINGS

PERCENTILES = (10.0, 50.0, 90.0)


def pool(vectors: np.ndarray, method: str) -> np.ndarray:
    """Pool (T, D) frame vectors into one media vector with a statistic.

    'mean', 'max' and 'std' give D values; 'meanstd' gives 2D (mean then std); 'pct' gives 3D
    (10th, 50th, 90th percentile, each over D). With no frames (T = 0) the result is all-NaN,
    so a downstream imputer can fill it.
    """
    if method not in STAT_POOLINGS:
        raise ValueError(f"unknown pooling '{method}'; allowed: {', '.join(STAT_POOLINGS)}")
    vectors = np.asarray(vectors, dtype=np.float32)
    width = vectors.shape[1] if vectors.ndim == 2 else 0
    factor = {"meanstd": 2, "pct": len(PERCENTILES)}.get(method, 1)
    if vectors.ndim != 2 or len(vectors) == 0:
        return np.full(factor * width, np.nan, dtype=np.float32)
    if method == "mean":
        return vectors.mean(axis=0)
    if method == "max":
        return vectors.max(axis=0)
    if method == "std":
        return vectors.std(axis=0)
    if method == "pct":
        return np.percentile(vectors, PERCENTILES, axis=0).reshape(-1).astype(np.float32)
    return np.concatenate([vectors.mean(axis=0), vectors.std(axis=0)])


class Pooler(Protocol):
    """Turns a media's (T, D) frame vectors into one fixed-size vector."""

    name: str

    def fit(self, sequences: Sequence[np.ndarray]) -> Pooler:
        """Learn what the pooling needs from training media's frames (each (T, D))."""
        ...

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """One media's (T, D) frames -> (out_dim(D),) float32; all-NaN when T = 0."""
        ...


class StatPooler:
    """A statistics pooling (:func:`pool`); nothing to fit."""

    def __init__(self, method: str) -> None:
        if method not in STAT_POOLINGS:
            raise ValueError(f"unknown pooling '{method}'; allowed: {', '.join(STAT_POOLINGS)}")
        self.name = method

    def fit(self, sequences: Sequence[np.ndarray]) -> StatPooler:
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return pool(vectors, self.name)


class WindowSequencePooler:
    """Fixed-length window sequences for sequence heads.

    Frames are cut into windows of ``window`` frames every ``hop`` frames; each window becomes
    the mean of its frames (a last, shorter window too); the first ``steps`` windows are kept
    (missing ones padded with zeros). The media
    vector is ``[mask (steps,), window means (steps * D,)]`` with mask 1 for real windows, so a
    media-level matrix row holds a whole sequence; :func:`split_sequence` undoes the layout.
    """

    name = "seq"

    def __init__(self, window: int = 4, hop: int = 2, steps: int = 8) -> None:
        if window < 1 or hop < 1 or steps < 1:
            raise ValueError("window, hop and steps must be at least 1")
        self.window, self.hop, self.steps = window, hop, steps

    def fit(self, sequences: Sequence[np.ndarray]) -> WindowSequencePooler:
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        t, d = vectors.shape
        out = np.zeros((self.steps, d), np.float32)
        mask = np.zeros(self.steps, np.float32)
        for step in range(self.steps):
            start = step * self.hop
            if start >= t:
                break
            out[step] = vectors[start : start + self.window].mean(axis=0)
            mask[step] = 1.0
        return np.concatenate([mask, out.reshape(-1)])


def split_sequence(x: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Undo :class:`WindowSequencePooler`'s layout: (N, steps + steps*D) -> windows
    (N, steps, D) float32 and mask (N, steps) bool."""
    x = np.asarray(x, dtype=np.float32)
    width = x.shape[1] - steps
    if width <= 0 or width % steps:
        raise ValueError(f"a sequence matrix with {x.shape[1]} columns does not hold {steps} steps")
    mask = x[:, :steps] > 0.5
    windows = x[:, steps:].reshape(len(x), steps, width // steps)
    return windows, mask


def make_pooler(method: str, params: dict[str, Any] | None = None, seed: int = 0) -> Pooler:
    """A pooler by name; ``params`` holds 'components' (Fisher), 'clusters' (VLAD), 'window',
    'hop' and 'steps' (sequences, in frames / windows)."""
    params = params or {}
    if method in STAT_POOLINGS:
        return StatPooler(method)
    if method == "fisher":
        from raypipe.classify.encoding import FisherVectorEncoder

        return FisherVectorEncoder(int(params.get("components", 8)), seed=seed)
    if method == "vlad":
        from raypipe.classify.encoding import VladEncoder

        return VladEncoder(int(params.get("clusters", 8)), seed=seed)
    if method == "seq":
        return WindowSequencePooler(
            int(params.get("window", 4)), int(params.get("hop", 2)), int(params.get("steps", 8))
        )
    raise ValueError(f"unknown pooling '{method}'; allowed: {', '.join(POOLINGS)}")
