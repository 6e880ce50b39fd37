"""Reports of a run: metrics per model and split, per-class scores, the fusion's val/test gap,
confusion matrices and search curves, as a Markdown and an HTML page with PNG figures."""

from __future__ import annotations

import html
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from raypipe.metrics import (
    METRICS,
    TASK_METRIC,
    classification_scores,
    confusion,
    expression_macro_f1,
    multilabel_scores,
    regression_scores,
    va_ccc,
)
from raypipe.report.plots import plot_confusion, plot_per_class, plot_search_curves
from raypipe.store.run_folder import REPORT_FOLDER, RunFolder

log = logging.getLogger(__name__)

SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}

#: A page is a list of blocks: ("h2", text), ("p", text), ("table", DataFrame), ("img", file).
Block = tuple[str, Any]


#: The columns of :func:`metrics_table` before its scores.
KEY_COLUMNS = ["model", "split", "task", "level", "n"]
#: Score columns by task, in table order (a column no row has is left out).
TASK_COLUMNS = {
    "classification": list(METRICS),
    "multilabel": ["mean_f1"],
    "regression": ["ccc"],
}


def _record(run: RunFolder, model: str) -> Any:
    """A model's record, or a fused model's fusion record (``fusion/<model>.json``), or {}."""
    if run.has_model(model):
        return run.load_model(model)
    return run.fusion(model) if model in run.fusions() else {}


def _thresholds(run: RunFolder, model: str, width: int) -> np.ndarray:
    """Per-label thresholds of a multilabel model or fusion (chosen on val, in its record),
    else 0.5."""
    record = _record(run, model)
    if isinstance(record, dict) and record.get("thresholds") is not None:
        return np.asarray(record["thresholds"], dtype=np.float64)
    return np.full(width, 0.5)


def _target_names(run: RunFolder, model: str, width: int) -> list[str]:
    record = _record(run, model)
    names = record.get("targets") if isinstance(record, dict) else None
    names = names or run.meta().get("targets") or [str(k) for k in range(width)]
    return [str(n) for n in names] if len(names) == width else [str(k) for k in range(width)]


def split_scores(
    run: RunFolder, model: str, task: str, group: pd.DataFrame, frame_level: bool
) -> dict[str, float]:
    """The scores of one model on the rows of one split (media, or frames of a frame-level
    model): classification accuracy, macro-F1 (frame level: :func:`expression_macro_f1`,
    the ABAW expression score) and UAR over labelled rows; multilabel mean F1 over labels at
    the model's thresholds (:func:`au_mean_f1`) with F1 per label; regression mean CCC
    (:func:`va_ccc` for valence/arousal) with CCC per target."""
    if task == "classification":
        labelled = group[group["label"] >= 0]
        if labelled.empty:
            return {}
        truth = labelled["label"].to_numpy()
        predicted = np.stack(labelled["probs"].to_numpy()).argmax(axis=1)
        scores = classification_scores(truth, predicted, len(run.meta()["classes"]))
        if frame_level:
            scores["macro_f1"] = expression_macro_f1(truth, predicted)
        return scores
    outputs = np.stack(group["probs"].to_numpy()).astype(np.float64)
    truth = np.stack(group["target"].to_numpy()).astype(np.float64)
    names = _target_names(run, model, truth.shape[1])
    if task == "multilabel":
        thresholds = _thresholds(run, model, truth.shape[1])
        return multilabel_scores(truth, outputs, thresholds, names)
    if names == ["valence", "arousal"]:
        return va_ccc(truth, outputs)
    return regression_scores(truth, outputs, names)


def _labelled_rows(task: str, table: pd.DataFrame) -> pd.DataFrame:
    if task == "classification":
        return table[table["label"] >= 0]
    truth = np.stack(table["target"].to_numpy()) if len(table) else np.zeros((0, 1))
    labelled = np.isfinite(truth)
    if task == "multilabel":  # -1 also marks an unlabelled unit; regression values may be < 0
        labelled &= truth >= 0
    return table[labelled.any(axis=1)]


def metrics_table(run: RunFolder, per_target: bool = False) -> pd.DataFrame:
    """One row per (model, split): model, split, task (classification, multilabel,
    regression), level (media, or frame for models whose predictions have ``start_s``: one
    row per frame, scored over frames), n (labelled media or frames), then the scores of the
    task: accuracy, macro_f1, uar (classification), mean_f1 (multilabel), ccc (regression);
    a score that does not apply to a row's task is NaN. With ``per_target``, also F1 per
    label ('f1_<name>') and CCC per target ('ccc_<name>').

    Fused models' names start with 'fused'. Only labelled media (frames) are scored.
    """
    rows = []
    for model in run.models():
        table = run.predictions(model)
        task = run.model_task(model, table)
        frame_level = "start_s" in table.columns
        table = _labelled_rows(task, table)
        for split, group in table.groupby("split"):
            scores = split_scores(run, model, task, group, frame_level)
            if not per_target:
                scores = {k: v for k, v in scores.items() if k in TASK_COLUMNS[task]}
            level = "frame" if frame_level else "media"
            rows.append(
                {"model": model, "split": split, "task": task, "level": level, "n": len(group)}
                | scores
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=[*KEY_COLUMNS, *METRICS])
    scores = [c for t in TASK_COLUMNS.values() for c in t if c in frame.columns]
    extra = sorted(c for c in frame.columns if c not in KEY_COLUMNS and c not in scores)
    frame = frame[[*KEY_COLUMNS, *scores, *extra]]
    frame["_fused"] = frame["model"].str.startswith("fused")
    frame["_split"] = frame["split"].map(SPLIT_ORDER).fillna(9)
    frame = frame.sort_values(["_fused", "model", "_split"]).drop(columns=["_fused", "_split"])
    return frame.reset_index(drop=True)


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a table as JSON-ready dicts, scores that do not apply (NaN) left out."""
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
        for row in table.to_dict(orient="records")
    ]


def classification_models(run: RunFolder, models: list[str]) -> list[str]:
    """The single-label classification models among ``models`` (the others have targets)."""
    return [m for m in models if "target" not in run.predictions(m).columns]


def per_class_table(run: RunFolder, models: list[str], split: str = "test") -> pd.DataFrame:
    """F1 of every class (rows) for each model (columns) on the labelled media of ``split``."""
    classes = run.meta()["classes"]
    columns = {}
    for model in models:
        table = run.predictions(model)
        table = table[(table["split"] == split) & (table["label"] >= 0)]
        if table.empty:
            continue
        predicted = np.stack(table["probs"].to_numpy()).argmax(axis=1)
        columns[model] = f1_score(
            table["label"].to_numpy(),
            predicted,
            labels=list(range(len(classes))),
            average=None,
            zero_division=0,
        )
    return pd.DataFrame(columns, index=pd.Index(classes, name="class"))


def fusion_table(run: RunFolder, metric: str = "macro_f1") -> pd.DataFrame:
    """One row per fused model: its method, task and the metric its scores are in (``metric``
    for a classification fusion, its own task's (:data:`TASK_METRIC`) for a multilabel or
    regression one), then the val score (fitted on val, optimistic), val CV score
    (out-of-fold), test score and the gaps val - test and val CV - test."""
    rows = []
    for name in run.fusions():
        record = run.fusion(name)
        scores = record.get("scores", {})
        task = str(record.get("task") or "classification")
        used = metric if task == "classification" else TASK_METRIC.get(task, metric)

        def score(split: str, scores: dict = scores, used: str = used) -> float:
            return float(scores.get(split, {}).get(used, float("nan")))

        rows.append(
            {
                "model": name,
                "method": record.get("method", "weighted"),
                "task": task,
                "metric": used,
                "selected": "yes" if record.get("selected") else "",
                "val": score("val"),
                "val_cv": score("val_cv"),
                "test": score("test"),
                "gap_val_test": score("val") - score("test"),
                "gap_cv_test": score("val_cv") - score("test"),
            }
        )
    return pd.DataFrame(rows)


def _describe_fusion(record: dict[str, Any]) -> str:
    parts = [
        f"Method `{record.get('method', 'weighted')}` over "
        + ", ".join(f"`{m}`" for m in record["members"])
        + "."
    ]
    weights = record.get("weights")
    per = {"multilabel": "label", "regression": "target"}.get(record.get("task", ""), "class")
    if isinstance(weights, dict):
        shown = []
        for member, weight in weights.items():
            text = (
                f"{weight:.2f}"
                if isinstance(weight, float | int)
                else ("[" + ", ".join(f"{w:.2f}" for w in weight) + f"] per {per}")
            )
            shown.append(f"`{member}` {text}")
        parts.append(f"Rule {record.get('rule', 'sum')}; weights: " + ", ".join(shown) + ".")
    for key in ("coarse", "fine", "meta", "C", "targets", "thresholds"):
        if key in record:
            parts.append(f"{key}: {record[key]}.")
    search = record.get("search", {})
    if search.get("trials"):
        parts.append(f"Ray Tune trials among the candidates: {search['trials']}.")
    if search.get("candidates_scored"):
        parts.append(f"Weight vectors scored: {search['candidates_scored']}.")
    return " ".join(parts)


def _search_curves(run: RunFolder, out: Path, metric: str) -> list[Block]:
    blocks: list[Block] = []
    column = f"val_{metric}"
    trials = run.trials()
    if not trials.empty and column in trials.columns:
        key = "model" if "model" in trials.columns else trials.columns[0]
        curves = {
            str(name): group[column].to_numpy() for name, group in trials.groupby(key, sort=True)
        }
        curves["all trials"] = trials[column].to_numpy()
        plot_search_curves(
            curves,
            column,
            "classifier search (Ray Tune), best so far",
            out / "search_classifiers.png",
        )
        blocks += [
            ("h2", "Classifier search"),
            (
                "p",
                f"{len(trials)} Ray Tune trials; {column} of each trial (dots, in stored "
                "order) and the best so far (line), per model.",
            ),
            ("img", "search_classifiers.png"),
        ]
    fusion = run.fusion_trials()
    if not fusion.empty and column in fusion.columns:
        curves = {
            f"rule {rule}": group[column].to_numpy() for rule, group in fusion.groupby("rule")
        }
        curves["all"] = fusion[column].to_numpy()
        plot_search_curves(
            curves, column, "fusion search (Ray Tune), best so far", out / "search_fusion.png"
        )
        blocks += [
            ("h2", "Fusion search (Ray Tune)"),
            (
                "p",
                f"{len(fusion)} Ray Tune trials of per-model weights, in the order they "
                "finished; the vectorised search scores many more candidates (see each fusion).",
            ),
            ("img", "search_fusion.png"),
        ]
    return blocks


def report_blocks(
    run: RunFolder, out: Path, split: str = "test", metric: str | None = None
) -> list[Block]:
    """Build the report's blocks and write its PNGs into ``out``; ``metric`` (the search
    curves' and fusions' score) defaults to the run's task's (:data:`TASK_METRIC`)."""
    meta = run.meta()
    metric = metric or TASK_METRIC.get(str(meta.get("task", "classification")), "macro_f1")
    classes = meta["classes"]
    table = metrics_table(run)
    described = f"Store: `{meta.get('store', '?')}`. Classes: {', '.join(classes)}."
    if meta.get("targets"):
        described += f" Targets: {', '.join(map(str, meta['targets']))}."
    blocks: list[Block] = [
        ("p", described),
        ("h2", "Metrics per model and split"),
        ("table", table),
    ]
    fusions = fusion_table(run, metric)
    fused_names = [m for m in run.models() if m.startswith("fused")]
    # Each task has its own selected fusion; the classification one is shown with its members.
    chosen = sorted(
        (r["model"] for r in fusions.to_dict("records") if r["selected"]),
        key=lambda name: (run.fusion(name).get("task") or "classification") != "classification",
    )
    selected = chosen[0] if chosen else (fused_names[0] if fused_names else None)
    if not fusions.empty:
        blocks += [
            ("h2", "Fusion: validation against held-out test"),
            (
                "p",
                "Every fusion is fitted on the val predictions, so its val score is "
                "optimistic; val CV is the out-of-fold score (fitted on the other folds of val), "
                "which picks the selected method. A large positive gap to test means the fusion "
                "overfits the validation split.",
            ),
            ("table", fusions),
        ]
        for name in fusions["model"]:
            blocks += [("h2", name), ("p", _describe_fusion(run.fusion(name)))]
    members = (
        run.fusion(selected)["members"]
        if selected in run.fusions()
        else [m for m in run.models() if not m.startswith("fused")]
    )
    shown = classification_models(run, [*members, *([selected] if selected else [])])
    targets = metrics_table(run, per_target=True)
    targets = targets[(targets["task"] != "classification") & (targets["split"] == split)]
    if not targets.empty:
        targets = targets.dropna(axis=1, how="all").drop(columns=["split"])
        blocks += [
            (
                "h2",
                f"Multilabel and regression scores per target ({split})",
            ),
            (
                "p",
                "Multilabel: F1 of each label at the model's thresholds (chosen on val), "
                "mean_f1 their mean; regression: concordance correlation (CCC) of each "
                "target, ccc their mean. Frame-level models are scored over frames.",
            ),
            ("table", targets.reset_index(drop=True)),
        ]
    per_class = per_class_table(run, shown, split)
    if not per_class.empty:
        plot_per_class(per_class, f"per-class F1 ({split})", out / f"per_class_{split}.png")
        blocks += [
            ("h2", f"Per-class F1 ({split})"),
            ("table", per_class.reset_index()),
            ("img", f"per_class_{split}.png"),
        ]
    blocks += _search_curves(run, out, metric)
    blocks += [("h2", f"Confusion matrices ({split})")]
    for model in shown:
        predictions = run.predictions(model)
        predictions = predictions[(predictions["split"] == split) & (predictions["label"] >= 0)]
        if predictions.empty:
            continue
        predicted = np.stack(predictions["probs"].to_numpy()).argmax(axis=1)
        matrix = confusion(predictions["label"].to_numpy(), predicted, len(classes))
        image = f"confusion_{model}_{split}.png"
        plot_confusion(matrix, classes, f"{model} ({split})", out / image)
        blocks.append(("img", image))
    return blocks


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def to_markdown(title: str, blocks: list[Block]) -> str:
    """The page as Markdown (tables as pipe tables, figures as image links)."""
    lines = [f"# {title}", ""]
    for kind, value in blocks:
        if kind == "h2":
            lines += [f"## {value}", ""]
        elif kind == "p":
            lines += [value, ""]
        elif kind == "img":
            lines += [f"![{value}]({value})", ""]
        elif kind == "table":
            lines.append("| " + " | ".join(map(str, value.columns)) + " |")
            lines.append("|" + "|".join("---" for _ in value.columns) + "|")
            for row in value.itertuples(index=False):
                lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
            lines.append("")
    return "\n".join(lines)


def to_html(title: str, blocks: list[Block]) -> str:
    """The page as a standalone HTML file (figures referenced by file name)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for kind, value in blocks:
        if kind == "h2":
            body.append(f"<h2>{html.escape(value)}</h2>")
        elif kind == "p":
            body.append(f"<p>{html.escape(value).replace('`', '')}</p>")
        elif kind == "img":
            body.append(f'<img src="{html.escape(value)}" alt="{html.escape(value)}">')
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in value.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                for row in value.itertuples(index=False)
            )
            body.append(f"<table><tr>{head}</tr>{rows}</table>")
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def write_report(run: RunFolder, split: str = "test") -> str:
    """Write report/report.md, report/report.html, report/metrics.json and the PNGs into the
    run (built in local scratch, then copied file by file, so a run on object storage gets
    the same files); return where report.md is (path or URI)."""
    table = metrics_table(run)
    with tempfile.TemporaryDirectory(prefix="raypipe-report-") as scratch:
        out = Path(scratch)
        (out / "metrics.json").write_text(json.dumps(table_records(table), indent=2))
        blocks = report_blocks(run, out, split)
        name = run.root.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        title = f"raypipe report: {name}"
        (out / "report.html").write_text(to_html(title, blocks))
        (out / "report.md").write_text(to_markdown(title, blocks))
        run.write_folder(REPORT_FOLDER, out)
    where = run.location(f"{REPORT_FOLDER}/report.md")
    log.info("report written to %s", where)
    return where


__all__ = [
    "fusion_table",
    "metrics_table",
    "per_class_table",
    "plot_confusion",
    "table_records",
    "write_report",
]
