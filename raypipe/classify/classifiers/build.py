"""The classifier zoo over media-level features: one constructor, every model a scikit-learn
pipeline fitted on the train split only.

Imputation and (for the scikit-learn models) standardisation are pipeline steps, so their
statistics come from the training split alone and are applied unchanged to validation and test.
Torch heads (MLP, sequence heads) standardise inside :class:`NeuralHeadEstimator`.

| name | classification | multilabel | regression |
|---|---|---|---|
| logreg | logistic regression (C) | one-vs-rest | ridge (alpha = 1 / C) |
| linsvc | linear SVC (C), sigmoid-calibrated probabilities | one-vs-rest | linear SVR (C) |
| rbfsvc | RBF SVC (C, gamma), sigmoid-calibrated probabilities | one-vs-rest | RBF SVR (C, gamma) |
| rf | random forest (n_estimators, max_depth, min_samples_leaf) | one-vs-rest | random forest |
| lightgbm | LightGBM (n_estimators, num_leaves, learning_rate) | one-vs-rest | LightGBM |
| mlp | torch MLP (hidden, dropout, lr, epochs) | sigmoid outputs | linear outputs |
| lstm, gru, attention, netvlad | torch sequence heads over 'seq' pooling | as mlp | as mlp |
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from raypipe.classify.neural_heads import NeuralHeadEstimator
from raypipe.models.heads import SEQUENCE_KINDS

SKLEARN_CLASSIFIERS = ("logreg", "linsvc", "rbfsvc", "rf", "lightgbm")
NEURAL_CLASSIFIERS = ("mlp", *SEQUENCE_KINDS)
#: Classifiers that read window sequences ('seq' pooling) rather than one vector per media.
SEQUENCE_CLASSIFIERS = SEQUENCE_KINDS
CLASSIFIERS = SKLEARN_CLASSIFIERS + NEURAL_CLASSIFIERS


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


def _sklearn_model(name: str, params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
    weight = "balanced" if balanced else None
    c = float(params.get("C", 1.0))
    if task == "regression":
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.linear_model import Ridge
        from sklearn.svm import SVR, LinearSVR

        if name == "logreg":
            return Ridge(alpha=1.0 / c)
        if name == "linsvc":
            return LinearSVR(C=c, max_iter=5000, random_state=seed)
        if name == "rbfsvc":
            return SVR(C=c, gamma=params.get("gamma", "scale"))
        if name == "rf":
            return RandomForestRegressor(
                n_estimators=int(params.get("n_estimators", 200)),
                max_depth=params.get("max_depth"),
                min_samples_leaf=int(params.get("min_samples_leaf", 1)),
                random_state=seed,
                n_jobs=1,
            )
        from lightgbm import LGBMRegressor

        return LGBMRegressor(**_lightgbm_params(params, seed))
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=c, max_iter=3000, class_weight=weight, random_state=seed)
    if name in ("linsvc", "rbfsvc"):
        kernel = "linear" if name == "linsvc" else "rbf"
        return CalibratedSVC(kernel, c, params.get("gamma", "scale"), weight, seed)
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=int(params.get("n_estimators", 200)),
            max_depth=params.get("max_depth"),
            min_samples_leaf=int(params.get("min_samples_leaf", 1)),
            class_weight=weight,
            random_state=seed,
            n_jobs=1,
        )
    from lightgbm import LGBMClassifier

    return LGBMClassifier(class_weight=weight, **_lightgbm_params(params, seed))


def _lightgbm_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    return {
        "n_estimators": int(params.get("n_estimators", 200)),
        "num_leaves": int(params.get("num_leaves", 15)),
        "learning_rate": float(params.get("learning_rate", 0.05)),
        "min_child_samples": int(params.get("min_child_samples", 3)),
        "subsample": 0.9,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "random_state": seed,
        "n_jobs": 1,
        "verbose": -1,
    }


def build_classifier(
    name: str,
    params: dict[str, Any],
    seed: int = 0,
    task: str = "classification",
    balance: str = "class_weight",
) -> Pipeline:
    """A pipeline imputer -> [standard scaler ->] model ``name`` with ``params`` for ``task``.

    ``balance`` 'class_weight' weights classes inversely to their training frequency (for
    classification and per label for multilabel); 'oversample' and 'none' leave the model
    unweighted (oversampling happens on the training rows, see :mod:`raypipe.classify.fit`).
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier '{name}'; allowed: {', '.join(CLASSIFIERS)}")
    balanced = balance == "class_weight"
    impute = ("impute", SimpleImputer(strategy="mean", keep_empty_features=True))
    if name in NEURAL_CLASSIFIERS:
        neural = {k: v for k, v in params.items() if k in NeuralHeadEstimator().get_params()}
        model = NeuralHeadEstimator(
            kind=name, task=task, class_weight=balanced, seed=seed, **neural
        )
        return Pipeline([impute, ("model", model)])
    model = _sklearn_model(name, params, task, balanced, seed)
    if task == "multilabel":
        from sklearn.multiclass import OneVsRestClassifier

        model = OneVsRestClassifier(model)
    elif task == "regression":
        from sklearn.multioutput import MultiOutputRegressor

        model = MultiOutputRegressor(model)
    return Pipeline([impute, ("scale", StandardScaler()), ("model", model)])


def predict_proba_full(pipeline: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) probabilities, with zero columns for classes absent from training."""
    probs = np.zeros((len(x), n_classes), dtype=np.float32)
    if len(x) == 0:
        return probs
    known = pipeline.classes_.astype(int)
    probs[:, known] = pipeline.predict_proba(x)
    return probs
