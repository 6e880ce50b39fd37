"""`raypipe fuse`: late fusion of stored predictions, weights searched by Ray Tune on val."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray import tune

from raypipe.errors import ConfigError
from raypipe.fusion import RULES, AlignedPredictions, align_predictions, weighted_fusion
from raypipe.job_configs import FuseConfig
from raypipe.metrics import classification_scores
from raypipe.pipeline.tune_classifiers import best_per_modality
from raypipe.pipeline.tune_progress import TrialProgress
from raypipe.progress import progress_bar
from raypipe.run_store import RunFolder
from raypipe.runtime import cluster_cpus, ray_session

log = logging.getLogger(__name__)

FUSED_NAME = "fused.weighted"


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


def run_fuse(config: FuseConfig) -> dict[str, Any]:
    """Search fusion weights on val, store the fused predictions; return the fusion record."""
    if config.run is None:
        raise ConfigError("fuse needs a run folder (--run).")
    run = RunFolder(config.run)
    meta = run.meta()
    n_classes = len(meta["classes"])
    members = config.models or best_per_modality(run, config.metric)
    known = set(run.models())
    unknown = [m for m in members if m not in known]
    if unknown:
        raise ConfigError(
            f"models {unknown} have no predictions in run '{run.root}'; "
            f"known: {', '.join(sorted(known))}."
        )
    if len(members) < 2:
        raise ConfigError(f"fusion needs at least two models, got {members}.")
    aligned = align_predictions({m: run.predictions(m) for m in members})
    metric = f"val_{config.metric}"
    space: dict[str, Any] = {f"w{i}": tune.uniform(0.0, 1.0) for i in range(len(members))}
    space["rule"] = tune.choice(list(RULES))
    log.info("searching fusion weights of %s (%d samples)", ", ".join(members), config.num_samples)
    with ray_session(config.ray), progress_bar("tune fusion", config.num_samples) as advance:
        trainable = tune.with_resources(
            tune.with_parameters(
                _trial, aligned=aligned, n_classes=n_classes, metric=config.metric
            ),
            {"cpu": 1},
        )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                metric=metric,
                mode="max",
                num_samples=config.num_samples,
                max_concurrent_trials=cluster_cpus(),
                search_alg=tune.search.BasicVariantGenerator(random_state=config.seed),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                storage_path=str(run.tune_dir),
                name="fusion",
                verbose=0,
                callbacks=[TrialProgress(advance)],
            ),
        )
        results = tuner.fit()
    # Equal weights and each member alone are always candidates, so the fusion is never worse
    # on validation than its best member.
    fixed = [np.ones(len(members)), *np.eye(len(members))]
    candidates = [
        (score_weights(aligned, w, rule, "val", n_classes)[config.metric], rule, w)
        for w in fixed
        for rule in RULES
    ]
    for result in results:
        if result.error is None and result.metrics:
            weights = np.array([result.config[f"w{i}"] for i in range(len(members))])
            candidates.append((result.metrics[metric], result.config["rule"], weights))
    # Ties go to the flattest weights: the least tuned fusion is the least overfitted.
    best_score, rule, best = max(
        candidates, key=lambda c: (c[0], -np.ptp(c[2] / max(c[2].sum(), 1e-9)))
    )
    best = best / max(best.sum(), 1e-9)
    fused = weighted_fusion(aligned.probs, best, rule)
    run.write_predictions(FUSED_NAME, aligned.media_ids, aligned.splits, aligned.labels, fused)
    record = {
        "name": FUSED_NAME,
        "members": members,
        "rule": rule,
        "weights": dict(zip(members, best.round(4).tolist(), strict=True)),
        "search": {
            "trials": len(candidates) - len(fixed) * len(RULES),
            "metric": metric,
            "best": best_score,
        },
        "scores": {
            split: score_weights(aligned, best, rule, split, n_classes) for split in ("val", "test")
        },
    }
    run.write_fusion(FUSED_NAME, record)
    log.info(
        "fused %s (%s rule) with weights %s: val %s = %.3f",
        members,
        rule,
        record["weights"],
        config.metric,
        best_score,
    )
    return record
