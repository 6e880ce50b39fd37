"""The report of a training run: training curves (PNG) and a per-epoch metrics table
(Markdown) in ``<run>/report/``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

log = logging.getLogger(__name__)

#: Columns of the metrics table, in order (those present in the history are shown).
TABLE_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_macro_f1",
    "val_uar",
    "images_per_s",
)


def plot_curves(history: pd.DataFrame, metric: str, path: Path) -> None:
    """Save loss (train, val), the validation ``metric`` and the learning rate per epoch."""
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6), dpi=100)
    for column, label in (("train_loss", "train"), ("val_loss", "val")):
        if column in history:
            axes[0].plot(history["epoch"], history[column], marker="o", label=label)
    axes[0].set_title("cross-entropy loss")
    for column in ("train_accuracy", f"val_{metric}"):
        if column in history:
            axes[1].plot(history["epoch"], history[column], marker="o", label=column)
    axes[1].set_title("scores")
    axes[1].set_ylim(0, 1)
    for axis in axes[:2]:
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    if "lr" in history:
        axes[2].plot(history["epoch"], history["lr"], marker="o")
        axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for axis in axes:
        axis.set_xlabel("epoch")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def markdown_table(history: pd.DataFrame, columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """The history as a Markdown table (floats with 4 decimals)."""
    present = [c for c in columns if c in history]
    lines = ["| " + " | ".join(present) + " |", "|" + "|".join("---" for _ in present) + "|"]
    for row in history[present].itertuples(index=False):
        cells = [
            str(int(v)) if name == "epoch" else (f"{v:.4g}" if isinstance(v, float) else str(v))
            for name, v in zip(present, row, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_training_report(
    history: list[dict[str, float]],
    folder: Path,
    metric: str,
    summary: dict[str, object],
) -> Path:
    """Write ``curves.png``, ``metrics.csv`` and ``report.md`` into ``folder``; return the
    Markdown file. ``summary`` holds the lines shown above the table (best epoch, export...)."""
    frame = pd.DataFrame(history).sort_values("epoch").drop_duplicates("epoch", keep="last")
    folder.mkdir(parents=True, exist_ok=True)
    plot_curves(frame, metric, folder / "curves.png")
    frame.to_csv(folder / "metrics.csv", index=False)
    lines = ["# Training run", ""]
    lines += [f"- {key}: {value}" for key, value in summary.items()]
    lines += ["", "![training curves](curves.png)", "", markdown_table(frame), ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    log.info("training report: %s", path)
    return path
