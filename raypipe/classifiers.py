"""Classifiers over media-level features, each a scikit-learn pipeline fitted on train only.

Imputation and standardisation are pipeline steps, so their statistics come from the training
split alone and are applied unchanged to validation and test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

CLASSIFIERS = ("logreg", "lightgbm")


def build_classifier(name: str, params: dict[str, Any], seed: int = 0) -> Pipeline:
    """A pipeline imputer -> standard scaler -> classifier ``name`` with ``params``."""
    if name == "logreg":
        model = LogisticRegression(
            C=float(params.get("C", 1.0)), max_iter=3000, class_weight="balanced", random_state=seed
        )
    elif name == "lightgbm":
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(
            n_estimators=int(params.get("n_estimators", 200)),
            num_leaves=int(params.get("num_leaves", 15)),
            learning_rate=float(params.get("learning_rate", 0.05)),
            min_child_samples=int(params.get("min_child_samples", 3)),
            subsample=0.9,
            subsample_freq=1,
            colsample_bytree=0.8,
            class_weight="balanced",
            random_state=seed,
            n_jobs=1,
            verbose=-1,
        )
    else:
        raise ValueError(f"unknown classifier '{name}'; allowed: {', '.join(CLASSIFIERS)}")
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", model),
        ]
    )


def predict_proba_full(pipeline: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) probabilities, with zero columns for classes absent from training."""
    probs = np.zeros((len(x), n_classes), dtype=np.float32)
    if len(x) == 0:
        return probs
    known = pipeline.classes_.astype(int)
    probs[:, known] = pipeline.predict_proba(x)
    return probs
