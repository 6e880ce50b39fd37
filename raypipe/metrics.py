"""Scores used across raypipe, one implementation each.

Media-level classification: accuracy, macro-F1 and unweighted average recall. The ABAW
challenge metrics over frames: expression macro-F1 (:func:`expression_macro_f1`), action-unit
mean F1 over units, each thresholded (:func:`au_mean_f1`), valence/arousal mean concordance
correlation (:func:`va_ccc`). Multilabel and regression searches score with the same
functions (:func:`multilabel_scores`, :func:`regression_scores`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

METRICS = ("accuracy", "macro_f1", "uar")
#: The score each task is ranked by, as written in reports ('macro_f1', 'mean_f1', 'ccc').
TASK_METRIC = {"classification": "macro_f1", "multilabel": "mean_f1", "regression": "ccc"}


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


def expression_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The ABAW expression score: F1 of each class, averaged with equal weight, over every
    class that occurs in the truth or the prediction (a class predicted but never true
    counts, with F1 0). Inputs are (N,) class indices of the labelled frames (unlabelled
    frames, -1, are left out)."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    if len(y_true) == 0:
        return float("nan")
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def au_f1(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | Sequence[float] | float = 0.5
) -> np.ndarray:
    """F1 of each action unit (L,): unit ``k`` is called present where ``probs[:, k] >=
    thresholds[k]``; each unit is scored on the frames where it is labelled (``y_true`` 0/1,
    NaN or -1 unlabelled). A unit with no labelled frame scores NaN."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(probs), -1)
    limits = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y_true.shape[1],))
    scores = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        labelled = np.isfinite(y_true[:, k]) & (y_true[:, k] >= 0)
        if labelled.any():
            scores[k] = f1_score(
                y_true[labelled, k] > 0.5, probs[labelled, k] >= limits[k], zero_division=0
            )
    return scores


def au_mean_f1(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | Sequence[float] | float = 0.5
) -> float:
    """The ABAW action-unit score: F1 of each unit (:func:`au_f1`, each at its own
    threshold), averaged over the units with equal weight (units never labelled left out)."""
    scores = au_f1(y_true, probs, thresholds)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Concordance correlation coefficient of two (N,) series:
    ``2 cov / (var_true + var_pred + (mean_true - mean_pred)^2)`` (1 = identical, 0 = none),
    with population (1/N) moments."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    if len(y_true) < 2:
        return float("nan")
    mean_t, mean_p = y_true.mean(), y_pred.mean()
    covariance = ((y_true - mean_t) * (y_pred - mean_p)).mean()
    denominator = y_true.var() + y_pred.var() + (mean_t - mean_p) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else float("nan")


def va_ccc(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The ABAW valence/arousal score: CCC of valence and of arousal, each over the frames
    where it is labelled (finite), and their mean ('ccc'); inputs (N, 2) in [-1, 1]."""
    return regression_scores(y_true, y_pred, ["valence", "arousal"])


def regression_scores(
    y_true: np.ndarray, y_pred: np.ndarray, names: list[str] | None = None
) -> dict[str, float]:
    """Mean CCC over targets ('ccc'), CCC per target ('ccc_<name>') and RMSE over all labelled
    values ('rmse'); inputs (N, K), each target scored where its truth is finite."""
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    names = names or [str(k) for k in range(y_true.shape[1])]
    labelled = np.isfinite(y_true)
    per_target = [
        ccc(y_true[labelled[:, k], k], y_pred[labelled[:, k], k]) for k in range(y_true.shape[1])
    ]
    scores = {f"ccc_{n}": v for n, v in zip(names, per_target, strict=True)}
    scores["ccc"] = float(np.mean(per_target)) if per_target else float("nan")
    errors = (y_true - y_pred)[labelled]
    scores["rmse"] = float(np.sqrt(np.mean(errors**2))) if len(errors) else float("nan")
    return scores


def multilabel_scores(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, names: list[str] | None = None
) -> dict[str, float]:
    """Mean F1 over labels ('mean_f1', :func:`au_mean_f1`), F1 per label ('f1_<name>') at
    ``thresholds``, and the mean F1 at 0.5 ('mean_f1_at_half'); inputs (N, L)."""
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    names = names or [str(k) for k in range(y_true.shape[1])]
    if len(y_true) == 0:
        return {"mean_f1": float("nan"), "mean_f1_at_half": float("nan")}
    per_label = au_f1(y_true, probs, thresholds)
    scores = {f"f1_{n}": float(v) for n, v in zip(names, per_label, strict=True)}
    scores["mean_f1"] = au_mean_f1(y_true, probs, thresholds)
    scores["mean_f1_at_half"] = au_mean_f1(y_true, probs, 0.5)
    return scores


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_classes)))
