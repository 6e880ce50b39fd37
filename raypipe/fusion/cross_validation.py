"""Cross-validation of fusion methods on validation predictions (plain NumPy, no Ray).

A fusion method is fitted on validation predictions, so its score on those same predictions
is optimistic. Here each method is fitted on k-1 folds of the validation media and applied to
the held-out fold; the out-of-fold fused predictions give an honest validation score, which
picks the method. The method is then refitted on all validation media.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold


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
    """(N,) fold index in ``0..n_folds-1`` per media from scikit-learn's ``StratifiedKFold``
    (shuffled with ``seed``), so every fold holds about the same class mix; a class with fewer
    media than folds is dealt on across folds. When no class has ``n_folds`` media,
    stratification is impossible and the folds come from a shuffled ``KFold``."""
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) and counts.max() >= n_folds:
        splitter: KFold | StratifiedKFold = StratifiedKFold(
            n_folds, shuffle=True, random_state=seed
        )
    else:
        splitter = KFold(n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(labels), dtype=int)
    with warnings.catch_warnings():
        # Validation sets are small: a class with fewer media than folds is expected here.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for fold, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            folds[held] = fold
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
