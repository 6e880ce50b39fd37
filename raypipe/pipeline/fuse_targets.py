"""`raypipe fuse` on multilabel and regression members (action units, valence/arousal): each
configured method that fuses targets (``build_targets`` in FUSION_METHODS: weighted, mean) is
fitted on the val rows, cross-validated over whole val media, written as ``fused.<method>``
in the members' prediction format, and the best by val CV challenge score (AU mean F1, VA
mean CCC) is marked selected. No Ray: the weight search is vectorised NumPy in one process."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from raypipe.config import FuseConfig
from raypipe.errors import ConfigError
from raypipe.fusion.methods import FUSION_METHODS, FusionContext, build_fusion_methods
from raypipe.fusion.targets import (
    AlignedTargets,
    TargetWeightSearch,
    align_targets,
    media_folds,
    out_of_fold_decisions,
)
from raypipe.metrics import TASK_METRIC, multilabel_scores, regression_scores
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def target_methods(config: FuseConfig) -> list[str]:
    """The methods fitted on multilabel/regression members: ``methods`` when the config sets
    it, else every registered method that fuses targets (in registry order)."""
    if "methods" in config.model_fields_set:
        return list(config.methods)
    return [name for name, entry in FUSION_METHODS.items() if entry.build_targets is not None]


def target_names(run: RunFolder, members: list[str], width: int) -> list[str]:
    """Names of the K targets: the first member record's ``targets`` of that width, else the
    run's (run.json), else their indices."""
    for member in members:
        record = run.load_model(member) if run.has_model(member) else None
        names = record.get("targets") if isinstance(record, dict) else None
        if names and len(names) == width:
            return [str(n) for n in names]
    names = run.meta().get("targets") or []
    return [str(n) for n in names] if len(names) == width else [str(k) for k in range(width)]


def task_scores(
    task: str, truth: np.ndarray, outputs: np.ndarray, thresholds: Any, names: list[str]
) -> dict[str, float]:
    """The challenge scores of (N, K) outputs: multilabel mean F1 over labels at
    ``thresholds`` with F1 per label; regression mean CCC with CCC per target and RMSE."""
    if task == "multilabel":
        return multilabel_scores(truth, outputs, np.asarray(thresholds, np.float64), names)
    return regression_scores(truth, outputs, names)


def run_target_fuse(
    run: RunFolder, config: FuseConfig, task: str, members: list[str]
) -> dict[str, Any]:
    """Fit, store and select the fusions of ``members`` (all of ``task``: multilabel or
    regression); return the selected record with ``methods``: every record by name."""
    try:
        aligned = align_targets({m: run.predictions(m) for m in members}, task)
    except ValueError as error:
        raise ConfigError(f"models {members} cannot be fused: {error}.") from error
    val = aligned.mask("val")
    n_media = len(set(aligned.media_ids[val]))
    if n_media < config.cv_folds:
        raise ConfigError(
            f"run '{run.root}' has {n_media} labelled val media, fewer than cv_folds="
            f"{config.cv_folds}; lower cv_folds or add val media."
        )
    if config.num_samples > 0:
        log.info("%s fusion searches its weights without Ray Tune (num_samples ignored)", task)
    names = target_names(run, members, aligned.truth.shape[1])
    folds = media_folds(aligned.media_ids[val], config.cv_folds, config.seed)
    context = FusionContext(config, list(members), [], task=task)
    metric = TASK_METRIC[task]
    records = {}
    for method in build_fusion_methods(context, target_methods(config)):
        records[method.name] = _fit_method(method, aligned, folds, run, config, task, names)

    def cv_score(record: dict[str, Any]) -> float:
        score = record["scores"]["val_cv"].get(metric, float("nan"))
        return score if np.isfinite(score) else -np.inf

    selected = max(records.values(), key=cv_score)  # first listed method wins ties
    for record in records.values():
        record["selected"] = record is selected
        record["candidates"] = sorted(records)
        run.write_fusion(record["name"], record)
    current = {r["name"] for r in records.values()}
    for name in run.fusions():
        old = run.fusion(name)
        if name not in current and old.get("selected"):
            run.write_fusion(name, {**old, "selected": False})
    return {**selected, "methods": records}


def _fit_method(
    method: TargetWeightSearch,
    aligned: AlignedTargets,
    folds: np.ndarray,
    run: RunFolder,
    config: FuseConfig,
    task: str,
    names: list[str],
) -> dict[str, Any]:
    val = aligned.mask("val")
    values, truth = aligned.values[:, val], aligned.truth[val]
    started = time.perf_counter()
    oof = out_of_fold_decisions(method, values, truth, folds)
    fitted = method.fit(values, truth)
    seconds = time.perf_counter() - started
    # Stored as float32, as every prediction file; scored from the stored values.
    fused = fitted.predict(aligned.values).astype(np.float32)
    name = f"fused.{method.name}"
    run.write_predictions(
        name,
        aligned.media_ids,
        aligned.splits,
        np.full(len(fused), -1),
        fused,
        aligned.truth,
        aligned.start_s,
    )
    run.save_fused_model(name, fitted)
    thresholds = fitted.thresholds
    scores = {
        split: task_scores(
            task,
            aligned.truth[aligned.mask(split)],
            fused[aligned.mask(split)],
            thresholds,
            names,
        )
        for split in ("val", "test")
    }
    # Out-of-fold multilabel decisions are already 0/1 at each fold's own thresholds.
    scores["val_cv"] = task_scores(task, truth, oof, 0.5, names)
    metric = TASK_METRIC[task]
    record = {
        "name": name,
        "method": method.name,
        "task": task,
        "members": list(aligned.models),
        "targets": names,
        **fitted.describe(list(aligned.models)),
        "search": {
            "metric": f"val_{metric}",
            "cv_folds": config.cv_folds,
            "trials": 0,
            "candidates_scored": int(method.last_scored),
            "seconds": round(seconds, 3),
        },
        "scores": scores,
    }
    log.info(
        "%-24s %s val %.3f, val CV %.3f, test %.3f",
        name,
        metric,
        scores["val"].get(metric, float("nan")),
        scores["val_cv"].get(metric, float("nan")),
        scores["test"].get(metric, float("nan")),
    )
    return record


__all__ = ["run_target_fuse", "target_methods", "target_names", "task_scores"]
