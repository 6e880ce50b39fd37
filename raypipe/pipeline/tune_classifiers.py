"""`raypipe tune-classifiers`: Ray Tune over feature set x pooling x classifier x params.

Each trial fits one configuration on the train split and reports validation scores. The best
configuration of every (feature set, classifier) pair is then refitted and its class
probabilities on every split are written to the run's predictions store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pandas as pd
from ray import tune

from raypipe.classifiers import predict_proba_full
from raypipe.errors import ConfigError
from raypipe.feature_matrix import FeatureMatrix, load_feature_matrix
from raypipe.job_configs import TuneClassifiersConfig
from raypipe.labels import label_space
from raypipe.pipeline.tune_progress import TrialProgress
from raypipe.progress import progress_bar
from raypipe.run_store import RunFolder
from raypipe.runtime import cluster_cpus, ray_session
from raypipe.store.feature_store import FeatureStore
from raypipe.training import fit_and_score, model_name

log = logging.getLogger(__name__)


def trial_specs(
    config: TuneClassifiersConfig, matrices: dict[str, FeatureMatrix]
) -> list[dict[str, Any]]:
    """Every (feature set, classifier, params) combination of the search space."""
    specs = []
    for feature_set in matrices:
        for classifier in config.classifiers:
            if classifier == "logreg":
                grid = [{"C": c} for c in config.logreg_c]
            else:
                grid = [
                    {"num_leaves": n, "n_estimators": config.lightgbm_n_estimators}
                    for n in config.lightgbm_num_leaves
                ]
            specs.extend(
                {"feature_set": feature_set, "classifier": classifier, "params": p} for p in grid
            )
    return specs


def _trial(
    config: dict[str, Any],
    matrices: dict[str, FeatureMatrix] | None = None,
    n_classes: int = 7,
    seed: int = 0,
) -> None:
    spec = config["spec"]
    _, scores = fit_and_score(matrices[spec["feature_set"]], spec, n_classes, seed)
    tune.report(scores)


def load_matrices(
    config: TuneClassifiersConfig, store: FeatureStore, n_classes: int
) -> dict[str, FeatureMatrix]:
    """Media-level matrices of every configured feature set x pooling."""
    labels = label_space()
    matrices: dict[str, FeatureMatrix] = {}
    records = store.extractors()
    for feature_set in config.feature_sets:
        record = records.get(feature_set.extractor)
        poolings = feature_set.pooling if record and record.level == "frame" else [None]
        for pooling in poolings:
            matrix = load_feature_matrix(store, feature_set.extractor, pooling, labels)
            if (matrix.split == "train").sum() == 0 or (matrix.split == "val").sum() == 0:
                raise ConfigError(
                    f"Feature set '{matrix.name}' has no train or no val media; the manifest "
                    "needs a 'split' column with train and val rows."
                )
            matrices[matrix.name] = matrix
    return matrices


def run_tune_classifiers(config: TuneClassifiersConfig) -> pd.DataFrame:
    """Search, refit the best per (feature set, classifier), store predictions; return the
    table of best models with their validation scores."""
    if config.store is None or config.run is None:
        raise ConfigError("tune-classifiers needs a store (--store) and a run folder (--run).")
    store = FeatureStore(config.store)
    store.require()
    labels = label_space()
    n_classes = len(labels)
    matrices = load_matrices(config, store, n_classes)
    run = RunFolder(config.run)
    run.create({"store": store.uri, "classes": list(labels.classes)})
    specs = trial_specs(config, matrices)
    metric = f"val_{config.metric}"
    log.info("searching %d configurations over %d feature set(s)", len(specs), len(matrices))

    with ray_session(config.ray), progress_bar("tune classifiers", len(specs)) as advance:
        concurrent = config.max_concurrent_trials or cluster_cpus()
        trainable = tune.with_parameters(
            _trial, matrices=matrices, n_classes=n_classes, seed=config.seed
        )
        trainable = tune.with_resources(trainable, {"cpu": 1})
        run.tune_dir.mkdir(parents=True, exist_ok=True)
        # The experiment is named by its search space: a changed config starts a new search,
        # the same config resumes (or returns) the one already there.
        space_id = hashlib.sha256(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:8]
        experiment = run.tune_dir / f"classifiers-{space_id}"
        if tune.Tuner.can_restore(str(experiment)):
            # A search whose driver died goes on from its last saved state.
            log.info("resuming the search in %s", experiment)
            tuner = tune.Tuner.restore(
                str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"spec": tune.grid_search(specs)},
                tune_config=tune.TuneConfig(
                    metric=metric, mode="max", max_concurrent_trials=concurrent, reuse_actors=True
                ),
                run_config=tune.RunConfig(
                    storage_path=str(run.tune_dir),
                    name=experiment.name,
                    verbose=0,
                    callbacks=[TrialProgress(advance)],
                ),
            )
        results = tuner.fit()

    rows = []
    for result in results:
        if result.error is not None or not result.metrics:
            log.warning("a trial failed: %s", result.error)
            continue
        spec = result.config["spec"]
        rows.append(
            {
                "model": model_name(spec),
                "feature_set": spec["feature_set"],
                "classifier": spec["classifier"],
                "params": str(spec["params"]),
                **{k: v for k, v in result.metrics.items() if k.startswith(("val_", "train_"))},
            }
        )
    trials = pd.DataFrame(rows)
    if trials.empty:
        raise RuntimeError("every Tune trial failed; see the logs above")
    run.write_trials(trials)
    best = trials.sort_values(metric, ascending=False).groupby("model", sort=False).head(1)

    for row in best.itertuples(index=False):
        matrix = matrices[row.feature_set]
        spec = {
            "feature_set": row.feature_set,
            "classifier": row.classifier,
            "params": eval_params(row.params),
        }
        model, _ = fit_and_score(matrix, spec, n_classes, config.seed)
        run.save_model(row.model, {"pipeline": model, "spec": spec, "modality": matrix.modality})
        labelled = matrix.y
        probs = predict_proba_full(model, matrix.x, n_classes)
        run.write_predictions(row.model, matrix.media_ids, matrix.split, labelled, probs)
        log.info("%-40s val %s = %.3f", row.model, config.metric, getattr(row, metric))
    summary = best[["model", "feature_set", "classifier", "params", metric]].copy()
    summary["modality"] = [matrices[f].modality for f in summary["feature_set"]]
    return summary.reset_index(drop=True)


def eval_params(text: str) -> dict[str, Any]:
    """Parse the params column (a dict's repr of numbers) back into a dict."""
    import ast

    value = ast.literal_eval(text)
    if not isinstance(value, dict):
        raise ValueError(f"params must be a dict, got {text!r}")
    return value


def best_per_modality(run: RunFolder, metric: str = "macro_f1") -> list[str]:
    """Names of the best (validation ``metric``) single model of each modality in a run."""
    trials = run.trials()
    best: dict[str, tuple[float, str]] = {}
    for name in trials["model"].unique():
        modality = run.load_model(name)["modality"]
        score = float(trials.loc[trials["model"] == name, f"val_{metric}"].max())
        if modality not in best or score > best[modality][0]:
            best[modality] = (score, name)
    return [name for _, name in sorted(best.values(), key=lambda item: -item[0])]


__all__ = ["best_per_modality", "run_tune_classifiers", "trial_specs"]
