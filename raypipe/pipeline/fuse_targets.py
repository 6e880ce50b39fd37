"""`raypipe fuse` on multilabel and regression members (action units, valence/arousal): each
configured method that fuses targets (``build_targets`` in FUSION_METHODS: weighted, mean) is
fitted on the val rows, cross-validated over whole val media, written as
``fused.<task>.<method>`` (e.g. ``fused.multilabel.weighted``) in the members' prediction
format, and the best by val CV challenge score (AU mean F1, VA mean CCC) is marked selected
among the fusions of that task. Configured methods that fuse class probabilities only are
skipped with one logged line. No Ray: the weight search is vectorised NumPy in one process."""

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
from raypipe.pipeline.fusion_store import FittedFusionModel, fusion_name, store_fusions
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def target_methods(config: FuseConfig, task: str) -> list[str]:
    """The methods fitted on ``task`` (multilabel/regression) members: those of ``methods``
    that fuse targets (the others, which fuse class probabilities only, are skipped with one
    logged line), or every registered method that fuses targets when ``methods`` is left at
    its default (in registry order).

    Raises:
        ConfigError: no listed method fuses targets.
    """
    able = [name for name, entry in FUSION_METHODS.items() if entry.build_targets is not None]
    if "methods" not in config.model_fields_set:
        return able
    listed = list(dict.fromkeys(config.methods))
    kept = [name for name in listed if name in able]
    skipped = [name for name in listed if name not in able]
    if not kept:
        named = ", ".join(repr(n) for n in listed)
        raise ConfigError(
            f"fusion methods {named} combine class probabilities only, not {task} members; "
            f"set methods to some of: {', '.join(able)}."
        )
    if skipped:
        log.info(
            "%s members: skipping fusion methods %s (class probabilities only); fitting %s",
            task,
            ", ".join(skipped),
            ", ".join(kept),
        )
    return kept


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
        aligned = align_targets(
            {m: run.predictions(m) for m in members}, task, config.frame_max_gap_s
        )
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
    fits = [
        _fit_method(method, aligned, folds, config, task, names)
        for method in build_fusion_methods(context, target_methods(config, task))
    ]
    return store_fusions(run, task, fits, metric)


def _fit_method(
    method: TargetWeightSearch,
    aligned: AlignedTargets,
    folds: np.ndarray,
    config: FuseConfig,
    task: str,
    names: list[str],
) -> FittedFusionModel:
    val = aligned.mask("val")
    values, truth = aligned.values[:, val], aligned.truth[val]
    started = time.perf_counter()
    oof = out_of_fold_decisions(method, values, truth, folds)
    fitted = method.fit(values, truth)
    seconds = time.perf_counter() - started
    # Stored as float32, as every prediction file; scored from the stored values.
    fused = fitted.predict(aligned.values).astype(np.float32)
    name = fusion_name(task, method.name)
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
            "candidate_rows_scored": int(method.last_scored_rows),
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
    predictions = {
        "media_ids": aligned.media_ids,
        "splits": aligned.splits,
        "labels": np.full(len(fused), -1),
        "probs": fused,
        "targets": aligned.truth,
        "start_s": aligned.start_s,
    }
    return FittedFusionModel(record, fitted, predictions)


__all__ = ["run_target_fuse", "target_methods", "target_names", "task_scores"]
