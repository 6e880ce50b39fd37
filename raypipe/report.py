"""Reports of a run: metrics per model and split, confusion matrices, a Markdown page."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from raypipe.metrics import METRICS, classification_scores, confusion
from raypipe.run_store import RunFolder

log = logging.getLogger(__name__)

SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def metrics_table(run: RunFolder) -> pd.DataFrame:
    """One row per (model, split): model, split, n, accuracy, macro_f1, uar.

    Fused models' names start with 'fused'. Only labelled media are scored.
    """
    classes = run.meta()["classes"]
    rows = []
    for model in run.models():
        table = run.predictions(model)
        table = table[table["label"] >= 0]
        for split, group in table.groupby("split"):
            probs = np.stack(group["probs"].to_numpy())
            scores = classification_scores(
                group["label"].to_numpy(), probs.argmax(axis=1), len(classes)
            )
            rows.append({"model": model, "split": split, "n": len(group), **scores})
    frame = pd.DataFrame(rows, columns=["model", "split", "n", *METRICS])
    if frame.empty:
        return frame
    frame["_fused"] = frame["model"].str.startswith("fused")
    frame["_split"] = frame["split"].map(SPLIT_ORDER).fillna(9)
    frame = frame.sort_values(["_fused", "model", "_split"]).drop(columns=["_fused", "_split"])
    return frame.reset_index(drop=True)


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
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [header, rule]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run: RunFolder, split: str = "test") -> Path:
    """Write report/report.md, report/metrics.json and confusion PNGs; return the .md path."""
    classes = run.meta()["classes"]
    table = metrics_table(run)
    out = run.report_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(table.to_dict(orient="records"), indent=2))
    lines = [
        f"# raypipe report: {run.root.name}",
        "",
        f"Store: `{run.meta().get('store', '?')}`  ",
        f"Classes: {', '.join(classes)}",
        "",
    ]
    lines += ["## Metrics per model and split", "", _markdown_table(table), ""]
    fused = [m for m in run.models() if m.startswith("fused")]
    for name in fused:
        record = run.fusion(name)
        val = record["scores"]["val"]["macro_f1"]
        test = record["scores"]["test"]["macro_f1"]
        lines += [
            f"## {name}",
            "",
            f"Rule: {record.get('rule', 'sum')}. Members and weights (searched on val with "
            f"Ray Tune, {record['search']['trials']} trials): "
            + ", ".join(f"`{m}` {w:.2f}" for m, w in record["weights"].items()),
            "",
            f"Macro-F1 val {val:.3f} vs test {test:.3f}: gap {val - test:+.3f} "
            "(a large positive gap means the weights overfit the validation split).",
            "",
        ]
    shown = fused + [m for m in (run.fusion(fused[0])["members"] if fused else run.models())]
    lines += [f"## Confusion matrices ({split})", ""]
    for model in shown:
        predictions = run.predictions(model)
        predictions = predictions[(predictions["split"] == split) & (predictions["label"] >= 0)]
        if predictions.empty:
            continue
        predicted = np.stack(predictions["probs"].to_numpy()).argmax(axis=1)
        matrix = confusion(predictions["label"].to_numpy(), predicted, len(classes))
        image = out / f"confusion_{model}_{split}.png"
        plot_confusion(matrix, classes, f"{model} ({split})", image)
        lines += [f"![{model}]({image.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    log.info("report written to %s", path)
    return path
