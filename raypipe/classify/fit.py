"""Fitting and scoring one model configuration on a feature matrix (plain Python, no Ray)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from raypipe.classify.classifiers import build_classifier, trains_in_epochs
from raypipe.classify.feature_matrix import FeatureMatrix
from raypipe.classify.targets import (
    MultiLabelModel,
    choose_thresholds,
    label_probabilities,
    model_outputs,
)
from raypipe.metrics import classification_scores, multilabel_scores, regression_scores

#: Called after each epoch of a torch head with the epoch (1-based), the model as it is then
#: (what :func:`score_model` returns) and its scores.
EpochCallback = Callable[[int, Any, dict[str, float]], None]


def model_name(spec: dict[str, Any]) -> str:
    """Stable model name of a trial spec: '<feature_set>.<classifier>'."""
    return f"{spec['feature_set']}.{spec['classifier']}"


def oversample(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Repeat rows of smaller classes (drawn at random, ``seed``) until every class present in
    ``y`` has as many rows as the largest; (N, D), (N,) -> (M, D), (M,)."""
    classes, counts = np.unique(y, return_counts=True)
    rng = np.random.default_rng(seed)
    picks = [np.arange(len(y))]
    for cls, count in zip(classes, counts, strict=True):
        if count < counts.max():
            rows = np.flatnonzero(y == cls)
            picks.append(rng.choice(rows, counts.max() - count, replace=True))
    order = np.concatenate(picks)
    return x[order], y[order]


def outputs(model: Any, task: str, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Model outputs on (N, D) ``x``: class probabilities (N, n_classes), label probabilities
    (N, L) or regression values (N, K); see :func:`raypipe.classify.targets.model_outputs`."""
    return model_outputs({"pipeline": model, "task": task}, x, n_classes)


def score_model(
    pipeline: Any, matrix: FeatureMatrix, n_classes: int
) -> tuple[Any, dict[str, float]]:
    """Scores of a fitted pipeline on train and val, keyed '<split>_<metric>'.

    A multilabel pipeline first gets per-label thresholds chosen on val (returned wrapped in a
    :class:`~raypipe.classify.targets.MultiLabelModel`); other pipelines are returned as they are.
    """
    model = pipeline
    if matrix.task == "multilabel":
        _, x_val, y_val = matrix.subset("val")
        probs = label_probabilities(pipeline, x_val) if len(x_val) else np.zeros(y_val.shape)
        model = MultiLabelModel(pipeline, choose_thresholds(y_val, probs))
    scores: dict[str, float] = {}
    for split in ("train", "val"):
        _, x, y = matrix.subset(split)
        out = outputs(model, matrix.task, x, n_classes)
        if matrix.task == "classification":
            predicted = out.argmax(axis=1) if len(out) else np.zeros(0, int)
            split_scores = classification_scores(y, predicted, n_classes)
        elif matrix.task == "multilabel":
            split_scores = multilabel_scores(y, out, model.thresholds, matrix.target_names)
        else:
            split_scores = regression_scores(y, out, matrix.target_names)
        scores.update({f"{split}_{metric}": value for metric, value in split_scores.items()})
    return model, scores


def fit_and_score(
    matrix: FeatureMatrix,
    spec: dict[str, Any],
    n_classes: int,
    seed: int = 0,
    balance: str = "class_weight",
    on_epoch: EpochCallback | None = None,
) -> tuple[Any, dict[str, float]]:
    """Fit ``spec`` (classifier + params) on the train split; score it on train and val.

    ``balance`` is 'class_weight', 'oversample' (classification only: smaller classes' train
    rows repeated up to the largest) or 'none'. ``on_epoch`` receives the model and scores after
    every epoch of a torch head (scikit-learn models fit in one go and never call it).

    Returns the fitted model (a pipeline, or a
    :class:`~raypipe.classify.targets.MultiLabelModel`) and scores keyed 'val_<metric>' and
    'train_<metric>'.
    """
    _, x_train, y_train = matrix.subset("train")
    if matrix.task == "classification" and len(set(y_train.tolist())) < 2:
        raise ValueError(f"feature set {matrix.name} has fewer than 2 classes in train")
    if len(x_train) == 0:
        raise ValueError(f"feature set {matrix.name} has no labelled train media")
    if balance == "oversample" and matrix.task == "classification":
        x_train, y_train = oversample(x_train, y_train, seed)
    pipeline = build_classifier(
        spec["classifier"], spec.get("params", {}), seed, matrix.task, balance
    )
    fit_params: dict[str, Any] = {}
    if on_epoch is not None and trains_in_epochs(spec["classifier"]):

        def report(epoch: int) -> None:
            on_epoch(epoch, *score_model(pipeline, matrix, n_classes))

        fit_params["model__on_epoch"] = report
    pipeline.fit(x_train, y_train, **fit_params)
    return score_model(pipeline, matrix, n_classes)
