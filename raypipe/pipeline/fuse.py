"""`raypipe fuse`: late fusion of stored predictions, each method fitted on val and compared by
cross-validation on val; Ray Tune adds per-model weight candidates on the cluster. Multilabel
and regression members are fused by :mod:`raypipe.pipeline.fuse_targets`."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from raypipe.config import FuseConfig
from raypipe.errors import ConfigError
from raypipe.fusion.cross_validation import FusionMethod, out_of_fold, stratified_folds
from raypipe.fusion.methods import FUSION_METHODS, FusionContext, build_fusion_methods
from raypipe.fusion.rules import RULES, AlignedPredictions, align_predictions, weighted_fusion
from raypipe.metrics import TASK_METRIC, classification_scores
from raypipe.pipeline.fuse_targets import run_target_fuse
from raypipe.pipeline.fusion_store import FittedFusionModel, fusion_name, store_fusions
from raypipe.pipeline.progress import progress_bar
from raypipe.pipeline.provenance import record_run
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.tracking import tune_callbacks
from raypipe.pipeline.tune_classifiers import best_per_modality
from raypipe.pipeline.tune_progress import TrialProgress
from raypipe.store.run_folder import TUNE_FOLDER, RunFolder

log = logging.getLogger(__name__)

FUSED_NAME = "fused.weighted"
"""Name of the per-model weighted fusion (the fusion every run has by default)."""


def score_weights(
    aligned: AlignedPredictions, weights: np.ndarray, rule: str, split: str, n_classes: int
) -> dict[str, float]:
    """Scores of the fusion (``rule``, ``weights``) on the labelled media of one split."""
    mask = aligned.mask(split)
    fused = weighted_fusion(aligned.probs[:, mask], weights, rule)
    return classification_scores(aligned.labels[mask], fused.argmax(axis=1), n_classes)


def _trial(
    config: dict[str, Any],
    aligned: AlignedPredictions | None = None,
    n_classes: int = 7,
    metric: str = "macro_f1",
) -> None:
    weights = np.array([config[f"w{i}"] for i in range(len(aligned.models))])
    scores = score_weights(aligned, weights, config["rule"], "val", n_classes)
    tune.report({f"val_{k}": v for k, v in scores.items()})


def tune_weight_candidates(
    aligned: AlignedPredictions, run: RunFolder, config: FuseConfig, n_classes: int
) -> np.ndarray:
    """Per-model weight vectors tried by Ray Tune (random search on val), as (K, M).

    Their trial table (weights, rule, val scores, seconds since the start) is stored in the
    run for the report's search curve.
    """
    n_models = len(aligned.models)
    space: dict[str, Any] = {f"w{i}": tune.uniform(0.0, 1.0) for i in range(n_models)}
    space["rule"] = tune.choice(list(config.rules))
    metric = f"val_{config.metric}"
    started = time.time()
    storage_path, storage_filesystem = run.ray_storage(TUNE_FOLDER)
    with progress_bar("tune fusion", config.num_samples) as advance:
        trainable = tune.with_resources(
            tune.with_parameters(_trial, aligned=aligned, n_classes=n_classes),
            {"cpu": 1},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=metric,
                mode="max",
                num_samples=config.num_samples,
                search_alg=tune.search.BasicVariantGenerator(random_state=config.seed),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                storage_path=storage_path,
                storage_filesystem=storage_filesystem,
                name="fusion",
                verbose=0,
                callbacks=[
                    TrialProgress(advance),
                    *tune_callbacks(config.tracking, run.root, "fuse"),
                ],
            ),
        )
        try:
            results = tuner.fit()
        finally:
            run.drop_tune_pickles()
    rows = []
    for result in results:
        if result.error is None and result.metrics:
            row = {f"w{i}": float(result.config[f"w{i}"]) for i in range(n_models)}
            row["rule"] = result.config["rule"]
            row.update({k: v for k, v in result.metrics.items() if k.startswith("val_")})
            row["finished_s"] = float(result.metrics.get("timestamp", started)) - started
            row["trial_id"] = str(result.metrics.get("trial_id", ""))
            rows.append(row)
    trials = pd.DataFrame(rows)
    if trials.empty:
        log.warning("every Ray Tune fusion trial failed; fusing without them")
        return np.zeros((0, n_models))
    # The candidates go in the order the seeded search generated them (trial ids count up),
    # so the weight search's tie-breaks never depend on which trial happened to finish first;
    # the stored table is in finishing order, for the report's search curve.
    generated = trials.sort_values("trial_id", kind="stable")
    candidates = generated[[f"w{i}" for i in range(n_models)]].to_numpy()
    trials = trials.drop(columns="trial_id").sort_values("finished_s", kind="stable")
    trials = trials.reset_index(drop=True)
    trials.insert(0, "trial", np.arange(len(trials)))
    run.write_fusion_trials(trials)
    return candidates


def fusion_methods(
    config: FuseConfig, members: list[str], classes: list[str], tune_candidates: np.ndarray
) -> list[FusionMethod]:
    """The configured fusion methods (registered in FUSION_METHODS), ready to fit."""
    context = FusionContext(config, list(members), list(classes), tune_candidates)
    return build_fusion_methods(context, list(config.methods))


def _members(run: RunFolder, config: FuseConfig) -> tuple[str, list[str]]:
    """The members' task and names (checked: known, at least two, all of one task, the run's
    task where run.json names one)."""
    run_task = run.meta().get("task", "classification")
    known = {m for m in run.models() if not m.startswith("fused")}
    if config.models:
        members = list(config.models)
    elif run.trials().empty:
        # Predictions written without a search (imported, or another tool's): fuse them all.
        members = sorted(known)
    else:
        metric = config.metric if run_task == "classification" else TASK_METRIC[run_task]
        members = best_per_modality(run, metric)
    unknown = [m for m in members if m not in known]
    if unknown:
        raise ConfigError(
            f"models {unknown} have no predictions in run '{run.root}'; "
            f"known: {', '.join(sorted(known))}."
        )
    if len(members) < 2:
        raise ConfigError(f"fusion needs at least two models, got {members}.")
    tasks = {m: run.model_task(m) for m in members}
    if len(set(tasks.values())) > 1:
        named = ", ".join(f"'{m}' ({t})" for m, t in tasks.items())
        raise ConfigError(
            f"models {named} are of different tasks; fusion combines models of one task, so "
            "list models of one task in models."
        )
    task = tasks[members[0]]
    if "task" in run.meta() and task != run_task:
        raise ConfigError(
            f"models {members} are {task} models but run '{run.root}' is a {run_task} run; "
            f"list {run_task} models in models."
        )
    return task, members


def run_fuse(config: FuseConfig) -> dict[str, Any]:
    """Fit every configured fusion method on val, store each as ``fused.<method>``
    (multilabel/regression members: ``fused.<task>.<method>``), mark the one with the best
    cross-validated val score as selected among the fusions of its task; return the selected
    record (with ``methods``: every record by method name)."""
    if config.run is None:
        raise ConfigError("fuse needs a run folder (--run).")
    run = RunFolder(config.run)
    record_run(run, "fuse", config)
    task, members = _members(run, config)
    if task != "classification":
        return run_target_fuse(run, config, task, members)
    if not run.meta().get("classes"):
        raise ConfigError(
            f"run '{run.root}' has no classes in run.json, which fusing classification models "
            "needs; re-run `raypipe tune-classifiers` into this run."
        )
    classes = list(run.meta()["classes"])
    n_classes = len(classes)
    aligned = align_predictions(
        {m: run.predictions(m) for m in members},
        config.smoothing.window_s,
        config.smoothing.method,
        config.smoothing.decision,
    )
    val = aligned.mask("val")
    if val.sum() < config.cv_folds:
        raise ConfigError(
            f"run '{run.root}' has {int(val.sum())} labelled val media, fewer than cv_folds="
            f"{config.cv_folds}; lower cv_folds or add val media."
        )
    candidates = np.zeros((0, len(members)))
    if config.num_samples > 0 and any(FUSION_METHODS.get(m).uses_tune for m in config.methods):
        log.info("Ray Tune: %d fusion weight vectors of %s", config.num_samples, members)
        with ray_session(config.ray):
            candidates = tune_weight_candidates(aligned, run, config, n_classes)
    folds = stratified_folds(aligned.labels[val], config.cv_folds, config.seed)
    fits = [
        _fit_method(method, aligned, folds, config, n_classes)
        for method in fusion_methods(config, members, classes, candidates)
    ]
    # Fusions of an earlier `raypipe fuse` whose method was not re-run stay, unselected.
    return store_fusions(run, "classification", fits, config.metric)


def _fit_method(
    method: FusionMethod,
    aligned: AlignedPredictions,
    folds: np.ndarray,
    config: FuseConfig,
    n_classes: int,
) -> FittedFusionModel:
    val = aligned.mask("val")
    probs, labels = aligned.probs[:, val], aligned.labels[val]
    started = time.perf_counter()
    oof = out_of_fold(method, probs, labels, folds)
    fitted = method.fit(probs, labels)
    seconds = time.perf_counter() - started
    fused = fitted.predict(aligned.probs)
    name = fusion_name("classification", method.name)
    scores = {
        split: classification_scores(
            aligned.labels[aligned.mask(split)],
            fused[aligned.mask(split)].argmax(axis=1),
            n_classes,
        )
        for split in ("val", "test")
    }
    scores["val_cv"] = classification_scores(labels, oof.argmax(axis=1), n_classes)
    record = {
        "name": name,
        "method": method.name,
        "members": list(aligned.models),
        **fitted.describe(list(aligned.models)),
        "search": {
            "metric": f"val_{config.metric}",
            "cv_folds": config.cv_folds,
            "trials": _tune_trials(method),
            "candidates_scored": int(getattr(method, "last_scored", 0)),
            "seconds": round(seconds, 3),
        },
        "scores": scores,
    }
    log.info(
        "%-24s %s val %.3f, val CV %.3f, test %.3f",
        name,
        config.metric,
        scores["val"][config.metric],
        scores["val_cv"][config.metric],
        scores["test"][config.metric],
    )
    predictions = {
        "media_ids": aligned.media_ids,
        "splits": aligned.splits,
        "labels": aligned.labels,
        "probs": fused,
    }
    return FittedFusionModel(record, fitted, predictions)


def _tune_trials(method: FusionMethod) -> int:
    extra = getattr(method, "extra", None)
    return 0 if extra is None else len(extra)


__all__ = ["FUSED_NAME", "RULES", "fusion_methods", "run_fuse", "score_weights"]
