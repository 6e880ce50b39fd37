"""Support vector machines: linear and RBF SVCs with calibrated probabilities (SVRs for
regression)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from raypipe.classify.classifiers.registry import register_classifier


class CalibratedSVC(BaseEstimator, ClassifierMixin):
    """A linear or RBF SVC whose decision values become probabilities by sigmoid (Platt)
    calibration over up to 3 stratified folds of the training rows. With fewer than two
    training rows in some class, calibration cannot hold rows out; a softmax of the decision
    values then stands in."""

    def __init__(
        self,
        kernel: str = "linear",
        c: float = 1.0,
        gamma: str | float = "scale",
        class_weight: str | None = None,
        seed: int = 0,
    ) -> None:
        self.kernel = kernel
        self.c = c
        self.gamma = gamma
        self.class_weight = class_weight
        self.seed = seed

    def _base(self) -> BaseEstimator:
        from sklearn.svm import SVC, LinearSVC

        if self.kernel == "linear":
            return LinearSVC(C=self.c, class_weight=self.class_weight, random_state=self.seed)
        return SVC(C=self.c, gamma=self.gamma, class_weight=self.class_weight)

    def fit(self, x: np.ndarray, y: np.ndarray) -> CalibratedSVC:
        from sklearn.calibration import CalibratedClassifierCV

        self.classes_, counts = np.unique(y, return_counts=True)
        folds = int(min(3, counts.min()))
        if folds >= 2:
            self.model_ = CalibratedClassifierCV(self._base(), method="sigmoid", cv=folds)
        else:
            self.model_ = self._base()
        self.model_.fit(x, y)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if hasattr(self.model_, "predict_proba"):
            return self.model_.predict_proba(x)
        scores = self.model_.decision_function(x)
        if scores.ndim == 1:
            scores = np.stack([-scores, scores], axis=1)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(axis=1)]


@register_classifier(
    "linsvc",
    grid={"C": [0.01, 0.1, 1.0]},
    description="linear SVC (C), sigmoid-calibrated probabilities; regression: linear SVR",
)
def linear_svc(params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
    c = float(params.get("C", 1.0))
    if task == "regression":
        from sklearn.svm import LinearSVR

        return LinearSVR(C=c, max_iter=5000, random_state=seed)
    return CalibratedSVC("linear", c, "scale", "balanced" if balanced else None, seed)


@register_classifier(
    "rbfsvc",
    grid={"C": [0.1, 1.0, 10.0], "gamma": ["scale"]},
    description="RBF SVC (C, gamma), sigmoid-calibrated probabilities; regression: SVR",
)
def rbf_svc(params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
    c = float(params.get("C", 1.0))
    gamma = params.get("gamma", "scale")
    if task == "regression":
        from sklearn.svm import SVR

        return SVR(C=c, gamma=gamma)
    return CalibratedSVC("rbf", c, gamma, "balanced" if balanced else None, seed)
