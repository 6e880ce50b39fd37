"""What `raypipe extract`, `raypipe tune-classifiers` and `raypipe train` would do (their
``--dry-run``), and what `raypipe store plan` prints.

Each reads what the command reads before its first Ray call (the manifest, the store's index,
the run folder, the training images) and returns a :class:`DryRun`: no Ray is started and
nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from raypipe.config import ExtractConfig, TrainConfig, TuneClassifiersConfig
from raypipe.pipeline.pool import BOUNDS, PoolSize
from raypipe.store.planning import Plan

#: The last line of every dry run.
NOTHING_RUN = "dry run: nothing was computed or written, and no Ray was started"


@dataclass
class DryRun:
    """A plan: ``summary`` (JSON-ready values) and ``tables`` (JSON key -> title and rows) for
    programs and people alike, then ``lines`` for people."""

    summary: dict[str, Any]
    tables: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


# -- extract ---------------------------------------------------------------------------------


def extract_plan_table(plan: Plan) -> pd.DataFrame:
    """One row per extractor: its version (and the store's current one), media to compute by
    reason (new, changed, retry), media reused, median seconds per media, estimate."""
    return pd.DataFrame(
        [
            {
                "extractor": p.name,
                "version": p.version,
                "current": p.current,
                "new_version": p.current != p.version,
                "todo": p.todo,
                **{reason: int(p.reasons.get(reason, 0)) for reason in ("new", "changed", "retry")},
                "reused": p.reused,
                "median_s": p.median_s,
                "estimate_s": p.estimate_s,
            }
            for p in plan.extractors
        ]
    )


def extract_plan(store: str | None, plan: Plan) -> DryRun:
    """The plan `raypipe store plan` prints: per extractor, and an estimate of one worker."""
    table = extract_plan_table(plan)
    total = float(table["estimate_s"].dropna().sum()) if len(table) else 0.0
    return DryRun(
        {"store": store, "media": len(plan.items)},
        {"extractors": (f"plan: {store}", table)},
        [
            f"{len(plan.items)} media to process; about {total:.0f} s of one worker where timed "
            "before (divide by the workers of the cluster)"
        ],
    )


def dry_run_extract(config: ExtractConfig) -> DryRun:
    """`raypipe extract --dry-run`: the store plan, the actor pool and what each actor
    reserves. Without Ray the cluster's reach is unknown, so an unset max_workers shows as
    the media to compute (the job itself reads the reach from the cluster it joins)."""
    from raypipe.pipeline.extract import describe_extractors, job_pool, plan_extract

    records, gpus = describe_extractors(config)  # models built once
    plan = plan_extract(config, records)
    todo = len(plan.items)
    base = extract_plan(config.out, plan)
    table = base.tables["extractors"][1]
    one_worker = float(table["estimate_s"].dropna().sum()) if len(table) else 0.0
    timed = bool(len(table)) and bool(table["estimate_s"].notna().any())
    per_actor = {"CPU": config.cpus_per_worker, **({"GPU": gpus} if gpus else {})}
    summary: dict[str, Any] = {
        "command": "extract",
        "dry_run": True,
        "manifest": str(config.manifest),
        **base.summary,
        "up_to_date": plan.skipped,
        "resources_per_actor": per_actor,
        "decode_tasks": config.decode_tasks,
        "estimate_s": {"one_worker": round(one_worker, 1) if timed else None},
    }
    lines = [
        f"{todo} media to process; {plan.skipped} (media x extractor) already up to date",
    ]
    if todo:
        pool = job_pool(config, todo, gpus, None)
        summary["pool"] = _pool_json(pool)
        lines.append(
            f"actors: {pool.describe()}, each {_resources(per_actor)}"
            + (f"; {config.decode_tasks} decode task(s) of 1 CPU" if config.decode_tasks else "")
        )
        if pool.bound == "media":
            lines.append(
                "(max_workers unset: the job bounds the pool by the largest cluster the "
                "autoscaler may start where the cluster reports it, else by the media)"
            )
        if timed:
            line = f"about {one_worker:.0f} s of one actor where timed before"
            if pool.bound != "media":
                wall = one_worker / pool.max
                summary["estimate_s"]["max_actors"] = round(wall, 1)
                line += f", {wall:.0f} s with {pool.max} actor(s)"
            lines.append(line)
        else:
            lines.append("no estimate: these extractor versions were never timed in this store")
    else:
        summary["pool"] = None
        lines.append("nothing to compute: every (media, extractor) is up to date")
    return DryRun(summary, base.tables, [*lines, NOTHING_RUN])


def _pool_json(pool: PoolSize) -> dict[str, Any]:
    return {"min": pool.min, "max": pool.max, "bound": pool.bound, "why": BOUNDS[pool.bound]}


def _resources(resources: dict[str, float]) -> str:
    return " + ".join(f"{amount:g} {name}" for name, amount in resources.items())


# -- tune-classifiers ------------------------------------------------------------------------


def dry_run_tune_classifiers(config: TuneClassifiersConfig) -> DryRun:
    """`raypipe tune-classifiers --dry-run`: feature sets x poolings x classifiers x params,
    the trials that makes, what the run folder already holds of this search (a re-run goes
    on from its ledger), concurrency and resources per trial. Reads the store's extractor
    records only (no features)."""
    from raypipe.classify.feature_matrix import missing_extractor
    from raypipe.classify.search_space import spec_key
    from raypipe.pipeline.tune_classifiers import (
        matrix_name,
        matrix_sources,
        require_store_and_run,
        search_specs,
        search_state,
    )
    from raypipe.store.feature_store import FeatureStore
    from raypipe.store.run_folder import TUNE_FOLDER, RunFolder

    require_store_and_run(config)
    store = FeatureStore(config.store)
    store.require()
    records = store.extractors()
    sources = matrix_sources(config, records)
    for extractor, _ in sources:
        if extractor not in records:
            raise missing_extractor(store.uri, extractor, records)
    names = list(dict.fromkeys(matrix_name(e, p) for e, p in sources))
    specs = search_specs(config, names)
    run = RunFolder(config.run)
    exists = run.exists()
    if exists:
        run.meta()  # a folder of another format stops the real run too
    state = search_state(config, specs, run)

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in specs:
        row = rows.setdefault(
            (spec["feature_set"], spec["classifier"]),
            {"feature_set": spec["feature_set"], "classifier": spec["classifier"]},
        )
        row["configurations"] = row.get("configurations", 0) + 1
        row["done"] = row.get("done", 0) + int(spec_key(spec) in state.done)
    table = pd.DataFrame(list(rows.values()))
    table["to_run"] = table["configurations"] - table["done"]

    trials = config.num_samples if config.search == "optuna" else len(specs)
    to_run = max(state.trials_left, 0)
    current = state.experiment.rsplit("/", 1)[-1]
    other = [
        name
        for name in run.subfolders(TUNE_FOLDER)
        if name.startswith("classifiers-") and name != current
    ]
    concurrency = config.max_concurrent_trials
    summary: dict[str, Any] = {
        "command": "tune-classifiers",
        "dry_run": True,
        "store": store.uri,
        "run": str(run.root),
        "search": config.search,
        "feature_sets": names,
        "classifiers": list(config.classifiers),
        "configurations": len(specs),
        "trials": trials,
        "done": trials - to_run if config.search == "optuna" else len(specs) - len(state.pending),
        "to_run": to_run,
        "max_concurrent_trials": concurrency,
        "resources_per_trial": {"CPU": config.cpus_per_trial},
        "early_stopping": config.early_stopping,
        "time_budget_s": config.time_budget_s,
        "run_exists": exists,
        "experiment": run.location(state.experiment),
        "other_searches": other,
    }
    poolings = {e: [p for x, p in sources if x == e] for e, _ in sources}
    shown = [
        e if poolings[e] == [None] else f"{e} x {len(poolings[e])} pooling(s)" for e in poolings
    ]
    lines = [
        f"{len(poolings)} feature set(s) ({', '.join(shown)}) -> {len(names)} feature "
        f"matrix(es) x {len(config.classifiers)} classifier(s) x their params = {len(specs)} "
        "configuration(s)",
        f"{config.search} search: {trials} trial(s); {summary['done']} done before in this run "
        f"folder, {to_run} to run",
        "at once: "
        + (f"{concurrency} trial(s)" if concurrency else "as many as the cluster's CPUs allow")
        + f"; each trial reserves {config.cpus_per_trial:g} CPU",
    ]
    if not exists:
        lines.append(f"run folder {run.root} is new")
    elif other:
        lines.append(
            f"run folder holds {len(other)} other search(es) ({', '.join(other)}); a changed "
            "config starts a new one"
        )
    title = f"tune-classifiers plan: {config.search} search"
    return DryRun(summary, {"space": (title, table)}, [*lines, NOTHING_RUN])


# -- train -----------------------------------------------------------------------------------


def dry_run_train(config: TrainConfig) -> DryRun:
    """`raypipe train --dry-run`: the labelled images per split and class, epochs, Ray Train
    workers and what each reserves, the hyperparameter grid, and whether the run resumes from
    a checkpoint in its run folder."""
    from raypipe.pipeline.train import (
        absolute_paths,
        check_images,
        checkpoint_state,
        latest_checkpoint,
        load_images,
        require_run,
        run_name,
        search_experiment,
        space_values,
    )

    require_run(config)
    config = absolute_paths(config)
    images = load_images(config)
    check_images(images)
    splits = [s for s in ("train", "val", "test") if len(images.indices(s))]
    table = pd.DataFrame(
        {"class": images.classes, **{s: images.class_counts(s).tolist() for s in splits}}
    )
    per_worker = {"CPU": config.cpus_per_worker, **({"GPU": 1.0} if config.use_gpu else {})}
    data = config.data
    summary: dict[str, Any] = {
        "command": "train",
        "dry_run": True,
        "run": str(config.run),
        "data": {
            "source": data.source,
            "path": data.root if data.source == "folder" else data.store,
            "classes": list(images.classes),
            "images": {s: len(images.indices(s)) for s in splits},
            "image_size": data.image_size,
        },
        "arch": config.arch,
        "epochs": config.epochs,
        "early_stop_patience": config.early_stop_patience,
        "batch_size": config.batch_size,
        "num_workers": config.num_workers,
        "resources_per_worker": per_worker,
        "loader_workers": config.loader_workers,
    }
    lines = [
        f"{config.arch} on {summary['data']['images'].get('train', 0)} train / "
        f"{summary['data']['images'].get('val', 0)} val images of {len(images.classes)} "
        f"classes ({data.source}: {summary['data']['path']})",
        f"at most {config.epochs} epoch(s) of batches of {config.batch_size} per worker; "
        f"{config.num_workers} Ray Train worker(s), each {_resources(per_worker)}",
    ]
    if config.search.active():
        grid = space_values(config)
        experiment = search_experiment(config)
        trials = math.prod(len(v) for v in grid.values())
        restores = config.search.resume and _can_restore(experiment)
        summary["search"] = {
            "grid": grid,
            "trials": trials,
            "max_concurrent_trials": config.search.max_concurrent_trials,
            "experiment": experiment,
            "resumes": restores,
        }
        lines.append(
            f"search: {trials} training run(s) over {', '.join(grid)}, "
            f"{config.search.max_concurrent_trials} at once; "
            + ("resumes the interrupted search" if restores else "starts the search afresh")
        )
        summary["resume"] = None
    else:
        checkpoint = latest_checkpoint(config)
        resume: dict[str, Any] = {"run_name": run_name(config), "checkpoint": None}
        if checkpoint is None:
            lines.append(f"starts afresh (no checkpoint of run {run_name(config)} in the folder)")
        else:
            state = checkpoint_state(checkpoint)
            finished = state.stopped_early or state.epoch >= config.epochs
            resume.update(
                checkpoint=checkpoint,
                epoch=state.epoch,
                best_epoch=state.best_epoch,
                best_score=state.best_score,
                finished=finished,
            )
            lines.append(
                f"resumes run {run_name(config)} from its checkpoint of epoch {state.epoch}"
                + (" (finished: no epochs left)" if finished else "")
            )
        summary["resume"] = resume
    return DryRun(summary, {"images": ("images per class", table)}, [*lines, NOTHING_RUN])


def _can_restore(experiment: str) -> bool:
    """Whether Ray Tune holds a restorable state of the search (a path or URI; no Ray is
    started)."""
    from ray import tune

    from raypipe.store.files import StoreFiles, ray_storage

    if not StoreFiles(experiment).listing(""):
        return False
    path, filesystem = ray_storage(experiment)
    return tune.Tuner.can_restore(path, storage_filesystem=filesystem)
