"""Stacking: a meta-classifier over the members' class probabilities, fitted on validation.

The meta-classifier (logistic regression, or a linear SVM whose one-vs-rest scores are turned
into probabilities by a softmax) reads the concatenated (M * C) member probabilities, plus one
presence flag per model when some media miss a model. Its regularisation strength is chosen by
stratified cross-validation on the media it is fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

from raypipe.fusion.methods.registry import FusionContext, register_fusion

META_CLASSIFIERS = ("logreg", "svm")


def stacking_features(probs: np.ndarray) -> np.ndarray:
    """(N, M*C + M) features: each model's probabilities (uniform where missing) and a 0/1
    flag per model saying whether it scored the media."""
    n_models, n_media, n_classes = probs.shape
    present = ~np.isnan(probs[..., 0])  # (M, N)
    filled = np.where(np.isnan(probs), 1.0 / n_classes, probs)
    stacked = filled.transpose(1, 0, 2).reshape(n_media, n_models * n_classes)
    return np.hstack([stacked, present.T.astype(np.float64)])


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class FittedStacking:
    """A fitted meta-classifier and the label space size."""

    model: Any
    meta: str
    n_classes: int
    c: float

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """(N, C) probabilities of the meta-classifier on (M, N, C) member probabilities."""
        features = stacking_features(probs)
        known = np.asarray(self.model.classes_, dtype=int)
        out = np.zeros((len(features), self.n_classes), dtype=np.float32)
        if len(known) == 1:
            out[:, known[0]] = 1.0
            return out
        if self.meta == "logreg":
            out[:, known] = self.model.predict_proba(features)
        else:
            scores = self.model.decision_function(features)
            if scores.ndim == 1:  # two classes: one signed score for the second class
                scores = np.stack([-scores, scores], axis=1)
            out[:, known] = _softmax(scores)
        return out

    def describe(self, members: list[str]) -> dict[str, Any]:
        """Meta-classifier kind and its chosen regularisation strength."""
        return {"meta": self.meta, "C": self.c, "inputs": members}


@dataclass
class StackingFusion:
    """Stacking with a logistic-regression or linear-SVM meta-classifier.

    Attributes:
        meta: 'logreg' or 'svm'.
        c_grid: inverse regularisation strengths tried by cross-validation.
        folds: cross-validation folds for choosing C (fewer when a class has fewer media).
        seed: seed of the fold split and the classifier.
    """

    meta: str = "logreg"
    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    folds: int = 3
    seed: int = 0

    @property
    def name(self) -> str:
        """Fused model name of this method."""
        return f"stacking_{self.meta}"

    def _estimator(self, c: float) -> Any:
        if self.meta == "logreg":
            return LogisticRegression(
                C=c, max_iter=2000, class_weight="balanced", random_state=self.seed
            )
        if self.meta == "svm":
            return SVC(kernel="linear", C=c, class_weight="balanced", random_state=self.seed)
        raise ValueError(f"unknown meta-classifier '{self.meta}'; allowed: logreg, svm")

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> FittedStacking:
        """Fit on (M, N, C) probabilities and (N,) labels, C chosen by stratified CV."""
        features = stacking_features(probs)
        labels = np.asarray(labels, dtype=int)
        n_classes = probs.shape[2]
        present, counts = np.unique(labels, return_counts=True)
        if len(present) == 1:
            model = _Constant(present)
            return FittedStacking(model, self.meta, n_classes, float("nan"))
        folds = min(self.folds, int(counts.min()))
        if folds >= 2 and len(self.c_grid) > 1:
            search = GridSearchCV(
                self._estimator(self.c_grid[0]),
                {"C": list(self.c_grid)},
                cv=StratifiedKFold(folds, shuffle=True, random_state=self.seed),
                scoring="f1_macro",
            )
            search.fit(features, labels)
            c = float(search.best_params_["C"])
        else:
            c = float(self.c_grid[len(self.c_grid) // 2])
        model = self._estimator(c).fit(features, labels)
        return FittedStacking(model, self.meta, n_classes, c)


@dataclass
class _Constant:
    """Stands in for a meta-classifier when the training media hold one class only."""

    classes_: np.ndarray


# -- registration ----------------------------------------------------------------------
def _stacking(meta: str) -> None:
    def build(context: FusionContext) -> StackingFusion:
        config = context.config
        return StackingFusion(
            meta=meta, c_grid=tuple(config.stacking_c), folds=config.cv_folds, seed=config.seed
        )

    description = f"stacking with a {meta} meta-classifier"
    register_fusion(f"stacking_{meta}", description=description)(build)


for _meta in META_CLASSIFIERS:
    _stacking(_meta)
