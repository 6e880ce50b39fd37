"""Cross-validation of fusion methods on validation predictions (plain NumPy, no Ray).

A fusion method is fitted on validation predictions, so its score on those same predictions
is optimistic. Here each method is fitted on k-1 folds of the validation media and applied to
the held-out fold; the out-of-fold fused predictions give an honest validation score, which
picks the method. The method is then refitted on all validation media.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class FittedFusion(Protocol):
    """A fusion fitted on validation predictions."""

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """(N, C) fused probabilities of (M, N, C) member probabilities (NaN: missing)."""
        ...

    def describe(self, members: list[str]) -> dict[str, Any]:
        """JSON-ready description of what was fitted (weights, chosen models...)."""
        ...


class FusionMethod(Protocol):
    """Something that fits a :class:`FittedFusion` on labelled predictions."""

    @property
    def name(self) -> str:
        """Suffix of the fused model's name (``fused.<name>``)."""
        ...

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> FittedFusion:
        """Fit on (M, N, C) probabilities and (N,) class indices of labelled media."""
        ...


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """(N,) fold index in ``0..n_folds-1`` per media, each class dealt round-robin over the
    folds after a seeded shuffle, so every fold holds about the same class mix."""
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=int)
    start = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # Continue the deal where the previous class stopped, so small classes do not all
        # land in fold 0.
        folds[members] = (start + np.arange(len(members))) % n_folds
        start += len(members)
    return folds


def out_of_fold(
    method: FusionMethod, probs: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """(N, C) fused probabilities, each media's from the method fitted without its fold."""
    fused = np.zeros(probs.shape[1:], dtype=np.float32)
    for fold in np.unique(folds):
        held = folds == fold
        fitted = method.fit(probs[:, ~held], labels[~held])
        fused[held] = fitted.predict(probs[:, held])
    return fused
