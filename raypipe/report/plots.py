"""PNG figures of a run's report: confusion matrices, per-class scores, search curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, classes: list[str], title: str, path: Path) -> None:
    """Save a row-normalised confusion matrix (counts annotated) as a PNG."""
    with np.errstate(invalid="ignore"):
        normalised = matrix / matrix.sum(axis=1, keepdims=True)
    figure, axis = plt.subplots(figsize=(5.2, 4.6), dpi=110)
    axis.imshow(np.nan_to_num(normalised), cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=10)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if matrix[i, j]:
                colour = "white" if normalised[i, j] > 0.6 else "black"
                axis.text(
                    j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8, color=colour
                )
    _save(figure, path)


def plot_per_class(scores: pd.DataFrame, title: str, path: Path) -> None:
    """Grouped bars of per-class F1: ``scores`` has one row per class and one column per
    model (values in [0, 1])."""
    n_classes, n_models = scores.shape
    width = 0.8 / max(n_models, 1)
    figure, axis = plt.subplots(figsize=(max(5.0, 0.9 * n_classes + 2), 3.6), dpi=110)
    for m, model in enumerate(scores.columns):
        offsets = np.arange(n_classes) - 0.4 + width * (m + 0.5)
        axis.bar(offsets, scores[model].to_numpy(), width, label=model)
    axis.set_xticks(range(n_classes), scores.index, rotation=30, ha="right")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("F1")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(figure, path)


def plot_search_curves(curves: dict[str, np.ndarray], ylabel: str, title: str, path: Path) -> None:
    """Best-so-far curves of a search: for each name, (T,) scores of its trials in order; the
    line is the running maximum and the dots the trials themselves."""
    figure, axis = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    for name, scores in curves.items():
        scores = np.asarray(scores, dtype=float)
        trials = np.arange(1, len(scores) + 1)
        (line,) = axis.step(trials, np.fmax.accumulate(scores), where="post", label=name)
        axis.plot(trials, scores, "o", markersize=3, alpha=0.4, color=line.get_color())
    axis.set_xlabel("trial")
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, loc="lower right")
    _save(figure, path)
