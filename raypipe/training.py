"""Fitting and scoring one classifier configuration on a feature matrix (plain Python)."""

from __future__ import annotations

from typing import Any

import numpy as np

from raypipe.classifiers import build_classifier, predict_proba_full
from raypipe.feature_matrix import FeatureMatrix
from raypipe.metrics import classification_scores


def model_name(spec: dict[str, Any]) -> str:
    """Stable model name of a trial spec: '<feature_set>.<classifier>'."""
    return f"{spec['feature_set']}.{spec['classifier']}"


def fit_and_score(
    matrix: FeatureMatrix, spec: dict[str, Any], n_classes: int, seed: int = 0
) -> tuple[Any, dict[str, float]]:
    """Fit ``spec`` (classifier + params) on the train split; score it on val (and train).

    Returns the fitted pipeline and scores keyed 'val_<metric>' and 'train_<metric>'.
    """
    _, x_train, y_train = matrix.subset("train")
    if len(set(y_train.tolist())) < 2:
        raise ValueError(f"feature set {matrix.name} has fewer than 2 classes in train")
    model = build_classifier(spec["classifier"], spec.get("params", {}), seed)
    model.fit(x_train, y_train)
    scores: dict[str, float] = {}
    for split in ("train", "val"):
        _, x, y = matrix.subset(split)
        probs = predict_proba_full(model, x, n_classes)
        predicted = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
        for metric, value in classification_scores(y, predicted, n_classes).items():
            scores[f"{split}_{metric}"] = value
    return model, scores
