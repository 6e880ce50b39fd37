"""Learning tasks beyond single-label classification, as the ABAW systems need them.

- ``classification``: one class per media (the manifest's ``label``); scores accuracy,
  macro-F1, UAR (scores live in :mod:`raypipe.metrics`).
- ``multilabel``: several binary labels per media (e.g. action units), read from a targets
  table; one probability per label, a threshold per label chosen on validation to maximise
  that label's F1; scores the mean F1 over labels.
- ``regression``: real-valued targets per media (e.g. valence and arousal in [-1, 1]); scores
  the concordance correlation coefficient (CCC) per target and its mean, and RMSE.

Targets of multilabel and regression tasks live in a table (CSV or Parquet) with a
``media_id`` column and one column per target; a missing value (empty cell, NaN) means the
media is not labelled for that task and is left out of training and scoring.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from raypipe.errors import ConfigError

Task = Literal["classification", "multilabel", "regression"]


def read_targets(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """The targets table indexed by media_id with ``columns`` as float (NaN where missing)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Targets file '{path}' does not exist; check the targets field.")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in ["media_id", *columns] if c not in table.columns]
    if missing:
        raise ConfigError(
            f"Targets file '{path}' lacks column(s) {', '.join(missing)}; it needs media_id "
            "and every name in target_columns."
        )
    frame = table.set_index(table["media_id"].astype(str))[columns]
    return frame.apply(pd.to_numeric, errors="coerce").astype(np.float64)


def choose_thresholds(
    y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray | None = None
) -> np.ndarray:
    """Per-label decision thresholds (L,) maximising each label's F1 on (N, L) 0/1 truth and
    probabilities; ties go to the threshold nearest 0.5, a label without positives keeps 0.5."""
    grid = np.linspace(0.05, 0.95, 19) if grid is None else np.asarray(grid)
    y_true = np.asarray(y_true) > 0.5
    probs = np.asarray(probs)
    thresholds = np.full(y_true.shape[1], 0.5)
    order = np.argsort(np.abs(grid - 0.5), kind="stable")
    for label in range(y_true.shape[1]):
        if not y_true[:, label].any():
            continue
        best = -1.0
        for threshold in grid[order]:
            score = f1_score(y_true[:, label], probs[:, label] >= threshold, zero_division=0)
            if score > best + 1e-12:
                best, thresholds[label] = score, threshold
    return thresholds


class MultiLabelModel:
    """A fitted multi-label pipeline with its per-label thresholds (chosen on validation).

    ``predict_proba(x)`` gives (N, L) per-label probabilities; ``predict(x)`` (N, L) 0/1.
    """

    def __init__(self, pipeline: Any, thresholds: np.ndarray) -> None:
        self.pipeline = pipeline
        self.thresholds = np.asarray(thresholds, np.float64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, len(self.thresholds)), np.float32)
        return label_probabilities(self.pipeline, x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.predict_proba(x) >= self.thresholds[None]).astype(np.int32)


def label_probabilities(pipeline: Any, x: np.ndarray) -> np.ndarray:
    """(N, L) positive-class probabilities of a multi-label estimator (a one-vs-rest pipeline
    gives them directly; a list per label, as some estimators return, is gathered)."""
    probs = pipeline.predict_proba(x)
    if isinstance(probs, list):
        probs = np.stack([p[:, -1] for p in probs], axis=1)
    return np.asarray(probs, np.float32)


def model_outputs(record: dict[str, Any], x: np.ndarray, n_classes: int) -> np.ndarray:
    """What a saved model (``RunFolder.load_model``) outputs for a media-level matrix (N, D):
    classification (N, n_classes) class probabilities (zero for classes unseen in training),
    multilabel (N, L) per-label probabilities, regression (N, K) predicted values."""
    from raypipe.classify.classifiers import predict_proba_full

    task = record.get("task", "classification")
    model = record["pipeline"]
    if task == "classification":
        return predict_proba_full(model, x, n_classes)
    if task == "multilabel":
        return model.predict_proba(x)
    if len(x) == 0:
        return np.zeros((0, len(record.get("targets", [0]))), np.float32)
    values = np.asarray(model.predict(x), np.float32)
    return values.reshape(len(x), -1)
