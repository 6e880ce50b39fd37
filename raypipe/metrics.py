"""Classification scores used across raypipe: accuracy, macro-F1, unweighted average recall."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

METRICS = ("accuracy", "macro_f1", "uar")


def classification_scores(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy, macro-F1 and UAR (mean per-class recall) over the classes ``0..n_classes-1``.

    Classes absent from both truth and prediction are left out of the macro averages.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if len(y_true) == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "uar": float("nan")}
    present = sorted(set(y_true.tolist()))
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "uar": float(
            recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
