"""`raypipe tune-classifiers`: Ray Tune over feature set x pooling x classifier x params.

Each trial fits one configuration on the train split, reports validation scores (torch heads
after every epoch, so ASHA can stop poor ones) and checkpoints its predictions on every split;
the driver copies them to ``RUN/trial_predictions`` and records the trial in a ledger, which is
what a re-run after a dead driver resumes from. The best configuration of every (feature set,
classifier) pair is then refitted, saved as a model record and its predictions written to the
run's predictions store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from ray import tune

from raypipe.classify.classifiers import trains_in_epochs
from raypipe.classify.feature_matrix import FeatureMatrix, frame_sequences, load_feature_matrix
from raypipe.classify.fit import fit_and_score, model_name, outputs
from raypipe.classify.pooling import POOLINGS
from raypipe.classify.search_space import OptunaSpace, spec_from_sample, spec_key, trial_specs
from raypipe.classify.targets import read_targets
from raypipe.classify.trial_spec import TrialSpec
from raypipe.config import TuneClassifiersConfig
from raypipe.errors import ConfigError, SearchError
from raypipe.labels import LABEL_SPACES, LabelSpace
from raypipe.pipeline.progress import progress_bar
from raypipe.pipeline.provenance import record_run
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.tracking import tune_callbacks
from raypipe.pipeline.trial_ledger import (
    MODEL_FILE,
    PREDICTIONS_FILE,
    LedgerCallback,
    TrialLedger,
)
from raypipe.pipeline.tune_progress import TrialProgress
from raypipe.store import artifacts
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import TUNE_FOLDER, RunFolder, prediction_table

log = logging.getLogger(__name__)

#: Packs of one-shot configurations per concurrent trial when configs_per_trial is unset:
#: enough that the last packs of a search end close together.
TRIALS_PER_SLOT = 4


def _prediction_args(matrix: FeatureMatrix, out: Any) -> dict[str, Any]:
    if matrix.task == "classification":
        return {"labels": matrix.y, "probs": out}
    return {"labels": [-1] * len(matrix.y), "probs": out, "targets": matrix.y}


def model_record(
    matrix: FeatureMatrix, spec: dict[str, Any] | TrialSpec, model: Any
) -> dict[str, Any]:
    """The saved form of a fitted model (``RunFolder.save_model``, a skops file): ``pipeline``
    (with ``predict_proba``; regression: ``predict``), ``spec`` (a validated
    :class:`TrialSpec` as a plain dict), ``modality``, ``task``, the fitted ``pooler`` (None
    for media-level sets), ``trial_id``; multilabel and regression records add ``targets``
    (names), multilabel ones ``thresholds`` (per label, chosen on val)."""
    spec = TrialSpec.parse(spec).to_dict()
    record: dict[str, Any] = {
        "pipeline": model,
        "spec": spec,
        "modality": matrix.modality,
        "task": matrix.task,
        "pooler": matrix.pooler,
        "trial_id": spec_key(spec),
    }
    if matrix.task != "classification":
        record["targets"] = list(matrix.target_names)
    if matrix.task == "multilabel":
        record["thresholds"] = [float(t) for t in model.thresholds]
    return record


def _one_trial(
    config: dict[str, Any],
    matrices: dict[str, FeatureMatrix] | None = None,
    n_classes: int = 7,
    seed: int = 0,
    balance: str = "class_weight",
    checkpoint_epochs: frozenset[int] = frozenset(),
    search: TuneClassifiersConfig | None = None,
) -> None:
    # Ray logs every persisted checkpoint at INFO; one line per trial only clutters the run.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    # Grid and random searches hand over a spec, Optuna a flat sample of the same space.
    spec = config["spec"] if "spec" in config else spec_from_sample(search, config)
    spec_json = TrialSpec.parse(spec).to_json()
    matrix = matrices[spec["feature_set"]]
    key = spec_key(spec)
    started = time.time()

    def report(epoch: int, model: Any, scores: dict[str, float]) -> None:
        extra = {
            "trial_key": key,
            "spec_json": spec_json,
            "epochs": epoch,
            "started_at": started,
            "seconds": time.time() - started,
        }
        if epoch and epoch not in checkpoint_epochs:
            # Between ASHA's rungs a trial is never stopped, so no predictions are needed.
            tune.report({**scores, **extra, "checkpointed": False})
            return
        with tempfile.TemporaryDirectory() as folder:
            out = outputs(model, matrix.task, matrix.x, n_classes)
            table = prediction_table(
                matrix.media_ids, matrix.split, **_prediction_args(matrix, out)
            )
            pq.write_table(table, str(Path(folder) / PREDICTIONS_FILE))
            record = model_record(matrix, spec, model)
            (Path(folder) / MODEL_FILE).write_bytes(artifacts.dumps(record))
            checkpoint = tune.Checkpoint.from_directory(folder)
            tune.report({**scores, **extra, "checkpointed": True}, checkpoint=checkpoint)

    if trains_in_epochs(spec["classifier"]):
        fit_and_score(matrix, spec, n_classes, seed, balance, on_epoch=report)
    else:
        report(0, *fit_and_score(matrix, spec, n_classes, seed, balance))


def _packed_trial(
    specs: list[dict[str, Any]],
    matrices: dict[str, FeatureMatrix],
    n_classes: int,
    seed: int,
    balance: str,
    metric: str,
) -> None:
    """One Tune trial that fits several one-shot configurations one after another and reports
    once: ``packed_json`` lists each configuration's entry (what an unpacked trial reports),
    the checkpoint holds ``<trial key>/predictions.parquet`` of each and
    ``<trial key>/model.skops`` of the best (by ``metric``, then smallest key) configuration
    of each model name in the pack (only that one can be kept as the best model)."""
    entries: list[dict[str, Any]] = []
    kept: dict[str, tuple[float, str, FeatureMatrix, dict[str, Any], Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for spec in specs:
            matrix = matrices[spec["feature_set"]]
            key = spec_key(spec)
            started = time.time()
            model, scores = fit_and_score(matrix, spec, n_classes, seed, balance)
            entries.append(
                {
                    **scores,
                    "trial_key": key,
                    "spec_json": TrialSpec.parse(spec).to_json(),
                    "epochs": 0,
                    "started_at": started,
                    "seconds": time.time() - started,
                }
            )
            out = outputs(model, matrix.task, matrix.x, n_classes)
            table = prediction_table(
                matrix.media_ids, matrix.split, **_prediction_args(matrix, out)
            )
            (Path(folder) / key).mkdir()
            pq.write_table(table, str(Path(folder) / key / PREDICTIONS_FILE))
            name, score = model_name(spec), float(scores.get(metric, float("-inf")))
            best = kept.get(name)
            if best is None or (score, best[1]) > (best[0], key):
                kept[name] = (score, key, matrix, spec, model)
        for _, key, matrix, spec, model in kept.values():
            record = model_record(matrix, spec, model)
            (Path(folder) / key / MODEL_FILE).write_bytes(artifacts.dumps(record))
        scores = [float(e.get(metric, float("-inf"))) for e in entries]
        tune.report(
            {
                metric: max(scores),
                "packed_json": json.dumps(entries, default=float),
                "checkpointed": True,
            },
            checkpoint=tune.Checkpoint.from_directory(folder),
        )


def _trial(
    config: dict[str, Any],
    matrices: dict[str, FeatureMatrix] | None = None,
    n_classes: int = 7,
    seed: int = 0,
    balance: str = "class_weight",
    checkpoint_epochs: frozenset[int] = frozenset(),
    search: TuneClassifiersConfig | None = None,
    metric: str = "val_macro_f1",
) -> None:
    """A search's trainable: a pack of configurations (``config['spec']`` a list, see
    :func:`_packed_trial`) or one configuration (:func:`_one_trial`). Its name is in the
    name of every trial's folder (``_trial_<id>...``)."""
    if isinstance(config.get("spec"), list):
        logging.getLogger("ray.train").setLevel(logging.WARNING)
        _packed_trial(config["spec"], matrices or {}, n_classes, seed, balance, metric)
    else:
        _one_trial(config, matrices, n_classes, seed, balance, checkpoint_epochs, search)


def pack_specs(
    config: TuneClassifiersConfig, pending: list[dict[str, Any]], slots: int
) -> list[dict[str, Any] | list[dict[str, Any]]]:
    """The units of a grid or random search: packs of one-shot configurations (see
    ``configs_per_trial``), each a list, then every epoch-trained configuration alone.
    ``slots`` is the number of trials that run at once. Configurations are sorted by
    classifier and dealt round-robin, so each pack holds a like mix of slow and fast ones."""
    one_shot = [s for s in pending if not trains_in_epochs(s["classifier"])]
    alone = [s for s in pending if trains_in_epochs(s["classifier"])]
    if config.configs_per_trial is not None:
        count = math.ceil(len(one_shot) / config.configs_per_trial)
    elif config.search == "optuna" or config.tracking.backends:
        count = len(one_shot)  # each configuration its own (tracked) trial
    else:
        count = min(len(one_shot), TRIALS_PER_SLOT * max(slots, 1))
    if count >= len(one_shot):
        return list(pending)
    packs: list[list[dict[str, Any]]] = [[] for _ in range(count)]
    ordered = sorted(one_shot, key=lambda s: (s["classifier"], spec_key(s)))
    for i, spec in enumerate(ordered):
        packs[i % len(packs)].append(spec)
    return [*packs, *alone]


def matrix_sources(
    config: TuneClassifiersConfig, records: dict[str, Any]
) -> list[tuple[str, str | None]]:
    """(extractor, pooling) of every matrix the search reads, given the store's extractor
    records: frame-level sets once per pooling; media-level sets as stored (pooling None) or as
    TF-IDF of their transcripts. An extractor the store lacks is listed like a media-level one
    (reading it fails with :func:`~raypipe.classify.feature_matrix.missing_extractor`)."""
    sources: list[tuple[str, str | None]] = []
    for feature_set in config.feature_sets:
        record = records.get(feature_set.extractor)
        if record and record.level == "frame":
            poolings: list[str | None] = list(feature_set.pooling)
        else:  # media-level sets are read as stored, or as TF-IDF of their transcripts
            poolings = [p for p in feature_set.pooling if POOLINGS.get(p).source == "text"]
            poolings = poolings or [None]
        sources.extend((feature_set.extractor, pooling) for pooling in poolings)
    return sources


def matrix_name(extractor: str, pooling: str | None) -> str:
    """A matrix's (feature set's) name: '<extractor>' or '<extractor>.<pooling>'."""
    return extractor if pooling is None else f"{extractor}.{pooling}"


def _pooling_params(config: TuneClassifiersConfig) -> dict[str, Any]:
    return {
        "components": config.pooling_components,
        "clusters": config.pooling_components,
        "window": config.seq_window,
        "hop": config.seq_hop,
        "steps": config.seq_steps,
        "tfidf": config.tfidf,
    }


def extractor_matrices(
    config: TuneClassifiersConfig, store: FeatureStore, extractor: str, poolings: list[str | None]
) -> list[FeatureMatrix]:
    """The matrices of one extractor, one per pooling in ``poolings`` (None: as stored): a
    frame-level extractor's frames are read from the store once and pooled every way."""
    labels = LABEL_SPACES.get(config.labels)
    targets = None
    if config.task != "classification":
        targets = read_targets(config.targets, list(config.target_columns))
    record = store.extractors().get(extractor)
    frame_poolings = [p for p in poolings if p is not None and POOLINGS.get(p).source != "text"]
    sequences = None
    if record is not None and record.level == "frame" and frame_poolings:
        sequences = frame_sequences(store, extractor)
    return [
        load_feature_matrix(
            store,
            extractor,
            pooling,
            labels,
            pooling_params=_pooling_params(config),
            task=config.task,
            targets=targets,
            seed=config.seed,
            sequences=sequences,
        )
        for pooling in poolings
    ]


def _remote_extractor_matrices(
    config: TuneClassifiersConfig, store: str, extractor: str, poolings: list[str | None]
) -> list[FeatureMatrix]:
    return extractor_matrices(config, FeatureStore(store), extractor, poolings)


def load_matrices(
    config: TuneClassifiersConfig, store: FeatureStore, parallel: bool = False
) -> dict[str, FeatureMatrix]:
    """Media-level matrices of every configured feature set x pooling (fitted poolings are
    fitted on the train split here, once per feature set). Each extractor's features are read
    from the store once, whatever the number of its poolings; with ``parallel`` (a running
    Ray), each extractor is read and pooled in a Ray task of its own (one CPU each)."""
    labels = LABEL_SPACES.get(config.labels)
    by_extractor: dict[str, list[str | None]] = {}
    for extractor, pooling in matrix_sources(config, store.extractors()):
        by_extractor.setdefault(extractor, []).append(pooling)
    if parallel and len(by_extractor) > 1:
        import ray

        task = ray.remote(num_cpus=1, max_retries=1)(_remote_extractor_matrices)
        refs = [task.remote(config, store.uri, e, p) for e, p in by_extractor.items()]
        loaded = [m for found in ray.get(refs) for m in found]
    else:
        loaded = [
            m for e, p in by_extractor.items() for m in extractor_matrices(config, store, e, p)
        ]
    matrices: dict[str, FeatureMatrix] = {}
    for matrix in loaded:
        labelled = matrix.labelled()
        for split in ("train", "val"):
            if not ((matrix.split == split) & labelled).any():
                raise ConfigError(
                    f"Feature set '{matrix.name}' has no labelled {split} media; the "
                    "manifest needs a 'split' column with train and val rows (and, for "
                    "multilabel or regression, targets for them)."
                )
        # Multilabel and regression targets are (N, L) rows: only classes are counted.
        train = (matrix.split == "train") & labelled
        classification = config.task == "classification"
        train_classes = set(matrix.y[train].tolist()) if classification else set()
        if classification and len(train_classes) < 2:
            names = ", ".join(labels.classes[int(c)] for c in sorted(train_classes))
            raise _one_class(matrix.name, names, store.uri)
        matrices[matrix.name] = matrix
    return matrices


def search_id(config: TuneClassifiersConfig, specs: list[dict[str, Any]]) -> str:
    """8 hex digits naming a search: its specs and every setting that changes their results.
    The same config resumes the same search; a changed one starts a new search."""
    settings = {
        "specs": specs,
        "task": config.task,
        "targets": [str(config.targets), list(config.target_columns)],
        "balance": config.balance,
        "seed": config.seed,
        "pooling": [config.pooling_components, config.seq_window, config.seq_hop],
        "asha": [config.early_stopping, config.grace_epochs],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class SearchState:
    """Where a search stands in its run folder: what its ledger holds and what is left."""

    #: The search's Tune folder, run-relative (``tune/classifiers-<search id>``).
    experiment: str
    #: Finished trials by spec key (the ledger).
    done: dict[str, dict[str, Any]]
    #: Specs not finished yet (grid and random searches run them all).
    pending: list[dict[str, Any]]
    #: Trials still to run (optuna: the budget the ledger lacks).
    trials_left: int


def search_state(
    config: TuneClassifiersConfig, specs: list[dict[str, Any]], run: RunFolder
) -> SearchState:
    """What the run folder holds of the search of ``specs``; reads only."""
    experiment = f"{TUNE_FOLDER}/classifiers-{search_id(config, specs)}"
    done = TrialLedger(run.location(f"{experiment}/finished")).done()
    pending = [s for s in specs if spec_key(s) not in done]
    trials_left = (
        config.num_samples - _finished(done) if config.search == "optuna" else len(pending)
    )
    return SearchState(experiment, done, pending, trials_left)


def _run_search(
    config: TuneClassifiersConfig,
    matrices: dict[str, FeatureMatrix],
    pending: list[dict[str, Any]],
    experiment: str,
    ledger: TrialLedger,
    run: RunFolder,
    n_classes: int,
    trials_left: int = 0,
) -> None:
    """Run the pending specs (grid, random) or ``trials_left`` Optuna trials as one Tune
    experiment (a new one per attempt)."""
    metric = f"val_{config.metric}"
    scheduler = None
    checkpoint_epochs = {config.max_epochs}
    neural = any(trains_in_epochs(s["classifier"]) for s in pending)
    if config.early_stopping == "asha" and neural and config.max_epochs > config.grace_epochs:
        from ray.tune.schedulers import ASHAScheduler

        # One-shot scikit-learn trials report once, below the first rung, so only torch heads
        # are compared (and stopped) at the rungs: epochs grace * 3^k.
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=config.max_epochs,
            grace_period=config.grace_epochs,
            reduction_factor=3,
        )
        rung = config.grace_epochs
        while rung < config.max_epochs:
            checkpoint_epochs.add(rung)
            rung *= 3
    # The matrices go into Ray's object store once (with_parameters) and every trial reads
    # them from there: nothing is read from the feature store or pooled inside a trial.
    trainable = tune.with_parameters(
        _trial,
        matrices=matrices,
        n_classes=n_classes,
        seed=config.seed,
        balance=config.balance,
        checkpoint_epochs=frozenset(checkpoint_epochs),
        search=config,
        metric=metric,
    )
    trainable = tune.with_resources(trainable, {"cpu": config.cpus_per_trial})
    attempt = sum(name.startswith("attempt-") for name in run.subfolders(experiment)) + 1
    # Optuna's study lives in the experiment folder (a scratch copy written back, for a run on
    # object storage), so a resumed search keeps what TPE learnt from the trials before; the
    # remaining budget is what the ledger lacks.
    with run.local_file(f"{experiment}/optuna.db") as study:
        searcher, samples = None, 1
        units = (
            pending if config.search == "optuna" else pack_specs(config, pending, _slots(config))
        )
        if len(units) < len(pending):
            log.info("%d configurations packed into %d Tune trials", len(pending), len(units))
        param_space: dict[str, Any] = {"spec": tune.grid_search(units)}
        if config.search == "optuna":
            from optuna.storages import RDBStorage
            from ray.tune.search.optuna import OptunaSearch

            searcher = OptunaSearch(
                space=OptunaSpace(config, matrices),
                metric=metric,
                mode="max",
                seed=config.seed,
                study_name="classifiers",
                storage=RDBStorage(f"sqlite:///{study}"),
            )
            param_space, samples = {}, trials_left
        storage_path, storage_filesystem = run.ray_storage(experiment)
        with progress_bar("tune classifiers", samples if searcher else len(pending)) as advance:
            tuner = tune.Tuner(
                trainable,
                param_space=param_space,
                tune_config=tune.TuneConfig(
                    metric=metric,
                    mode="max",
                    search_alg=searcher,
                    num_samples=samples,
                    scheduler=scheduler,
                    max_concurrent_trials=config.max_concurrent_trials,
                    time_budget_s=config.time_budget_s,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    storage_path=storage_path,
                    storage_filesystem=storage_filesystem,
                    name=f"attempt-{attempt}",
                    verbose=0,
                    callbacks=[
                        TrialProgress(advance),
                        LedgerCallback(ledger, run, metric),
                        *tune_callbacks(config.tracking, run.root, "tune-classifiers"),
                    ],
                ),
            )
            try:
                tuner.fit()
            finally:
                run.drop_tune_pickles()


def _slots(config: TuneClassifiersConfig) -> int:
    """Trials that run at once: max_concurrent_trials, else the CPUs Ray has for them."""
    import ray

    if config.max_concurrent_trials:
        return config.max_concurrent_trials
    return max(1, int(ray.cluster_resources().get("CPU", 1) // config.cpus_per_trial))


def trials_table(
    specs: list[dict[str, Any]], done: dict[str, dict[str, Any]], task: str
) -> pd.DataFrame:
    """One row per finished spec: model, feature_set, classifier, params (JSON), trial_id,
    spec (the :class:`TrialSpec` as JSON), task, then its scores ('val_*', 'train_*') and
    started_at, seconds, epochs."""
    rows = []
    for spec in specs:
        entry = done.get(spec_key(spec))
        if entry is None:
            continue
        rows.append(
            {
                "model": model_name(spec),
                "feature_set": spec["feature_set"],
                "classifier": spec["classifier"],
                "params": json.dumps(spec["params"], sort_keys=True),
                "trial_id": spec_key(spec),
                "spec": TrialSpec.parse(spec).to_json(),
                "task": task,
                **entry["metrics"],
            }
        )
    return pd.DataFrame(rows)


def _finished(done: dict[str, dict[str, Any]]) -> int:
    """Trials finished so far (a spec Optuna proposed twice counts twice)."""
    return sum(int(entry.get("count", 1)) for entry in done.values())


def require_store_and_run(config: TuneClassifiersConfig) -> None:
    """Fail in one sentence unless both the store and the run folder are given."""
    if config.store is None or config.run is None:
        raise ConfigError("tune-classifiers needs a store (--store) and a run folder (--run).")


def search_specs(
    config: TuneClassifiersConfig, feature_sets: Iterable[str]
) -> list[dict[str, Any]]:
    """The trial specs of the search over ``feature_sets`` (matrix names, see
    :func:`matrix_name`); fails when no classifier reads any of them."""
    specs = trial_specs(config, feature_sets)
    if not specs:
        raise ConfigError(
            "The search space is empty: no classifier in classifiers reads the configured "
            "feature sets (sequence heads need 'seq' pooling, the others another pooling)."
        )
    return specs


def _check_train_classes(store: FeatureStore, labels: LabelSpace, name: str) -> None:
    """Before Ray starts: the store's manifest must label train media of two classes at least,
    or no feature set can train (the same error the loaded matrices give, for ``name``)."""
    manifest = store.read_manifest()
    if "split" not in manifest or "label" not in manifest:
        return  # the matrices' own checks name what is missing
    train = manifest.loc[manifest["split"] == "train", "label"].dropna()
    classes = {c for c in (labels.canonical(v) for v in train) if c is not None}
    if len(classes) == 1:
        raise _one_class(name, ", ".join(classes), store.uri)


def _one_class(name: str, classes: str, store: str) -> ConfigError:
    """The error of a feature set whose labelled train media hold one class only."""
    return ConfigError(
        f"Feature set '{name}' has labelled train media of one class only ({classes}) in "
        f"store '{store}'; a classifier needs at least two: label train media of other "
        "classes in the manifest, then re-run `raypipe extract` with it (only the store's "
        "manifest changes)."
    )


def run_tune_classifiers(config: TuneClassifiersConfig) -> pd.DataFrame:
    """Search (or resume the search), store every trial's predictions and the best model of
    each (feature set, classifier) with its predictions; return the table of those best
    models with their validation scores and modality."""
    require_store_and_run(config)
    store = FeatureStore(config.store)
    store.require()
    labels = LABEL_SPACES.get(config.labels)
    n_classes = len(labels)
    run = RunFolder(config.run)
    # What is left to search is known from the matrices' names alone; when trials will run,
    # Ray starts first and each extractor's matrices are read and pooled in a task of its own.
    names = dict.fromkeys(matrix_name(*s) for s in matrix_sources(config, store.extractors()))
    if names and config.task == "classification":
        _check_train_classes(store, labels, next(iter(names)))
    planned = search_state(config, search_specs(config, names), run)
    searching = bool(planned.pending) and planned.trials_left > 0
    with ray_session(config.ray) if searching else nullcontext():
        matrices = load_matrices(config, store, parallel=searching)
        held = run.meta().get("classes") if run.exists() else None
        if held is not None and list(held) != list(labels.classes):
            raise ConfigError(
                f"run '{run.root}' holds classes {list(held)}, but labels={config.labels} names "
                f"{list(labels.classes)}; set labels to the run's label space or use a new run."
            )
        meta = {
            "store": store.uri,
            "labels": config.labels,
            "classes": list(labels.classes),
            "task": config.task,
        }
        if config.task != "classification":
            meta["targets"] = list(config.target_columns)
        run.create(meta)
        record_run(run, "tune-classifiers", config)
        specs = search_specs(config, matrices)
        metric = f"val_{config.metric}"
        state = search_state(config, specs, run)
        experiment, done, pending = state.experiment, state.done, state.pending
        trials_left = state.trials_left
        ledger = TrialLedger(run.location(f"{experiment}/finished"))
        log.info(
            "%d configurations over %d feature set(s): %d done before, %d trial(s) to run",
            len(specs),
            len(matrices),
            len(specs) - len(pending),
            max(trials_left, 0),
        )
        if pending and trials_left > 0:
            _run_search(config, matrices, pending, experiment, ledger, run, n_classes, trials_left)
            done = ledger.done()
    if config.search == "optuna":
        missing = max(0, config.num_samples - _finished(done))
    else:
        missing = sum(spec_key(s) not in done for s in specs)
    if missing:
        log.warning(
            "%d trial(s) did not finish (time budget or failures); re-run to go on", missing
        )
    trials = trials_table(specs, done, config.task)
    if trials.empty:
        budget = config.time_budget_s
        raise SearchError(
            "No Tune trial finished: "
            + (f"time_budget_s={budget:g} ran out first or " if budget else "")
            + "every trial failed (Ray Tune printed each trial's error above and keeps it in "
            f"error.txt under '{run.location(experiment)}'); "
            + ("raise time_budget_s or fix " if budget else "fix ")
            + "the cause, then re-run the same command."
        )
    run.write_trials(trials)
    # The best trial of each model name; among equal scores the smallest trial id (the one
    # whose record the ledger callback kept), whatever order the trials finished in.
    ranked = trials.sort_values([metric, "trial_id"], ascending=[False, True], kind="stable")
    best = ranked.groupby("model", sort=False).head(1)

    for row in best.itertuples(index=False):
        if run.has_trial_model(row.trial_id):
            run.promote_trial(row.trial_id, row.model)
        else:
            _refit(config, matrices[row.feature_set], row, run, n_classes)
        log.info("%-40s val %s = %.3f", row.model, config.metric, getattr(row, metric))
    summary = best[["model", "feature_set", "classifier", "params", metric]].copy()
    summary["modality"] = [matrices[f].modality for f in summary["feature_set"]]
    return summary.reset_index(drop=True)


def _refit(
    config: TuneClassifiersConfig, matrix: FeatureMatrix, row: Any, run: RunFolder, n_classes: int
) -> None:
    """Fit a best configuration again (its trial's record was lost, e.g. the driver died
    between keeping it and recording the trial) and store its record and predictions."""
    spec = TrialSpec.parse(row.spec, f"trials.parquet of run '{run.root}' (trial {row.trial_id})")
    fit_spec = spec.to_dict()
    if trains_in_epochs(row.classifier):
        # The epochs the trial ran (fewer when ASHA stopped it).
        fit_spec["params"]["epochs"] = int(row.epochs)
    model, _ = fit_and_score(matrix, fit_spec, n_classes, config.seed, config.balance)
    run.save_model(row.model, model_record(matrix, spec, model))
    out = outputs(model, matrix.task, matrix.x, n_classes)
    run.write_predictions(
        row.model, matrix.media_ids, matrix.split, **_prediction_args(matrix, out)
    )


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


__all__ = ["best_per_modality", "load_matrices", "run_tune_classifiers", "trial_specs"]
