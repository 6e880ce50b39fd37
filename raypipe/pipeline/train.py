"""`raypipe train`: fine-tune a backbone with Ray Train, report, export as an extractor version.

Each Ray Train worker runs :func:`train_worker`: it reads the labelled images itself (paths or
store crops), trains its shard of every epoch (DistributedDataParallel across workers), checks
the whole validation split, and reports metrics with a checkpoint every epoch to the run's
storage (``<run>/ray/<name>``). A worker that dies is replaced and the group resumes from the
last checkpoint (``max_failures``); a driver that dies resumes the same way when the command is
run again, because the Ray Train run is named by the training settings and restored by name.

The run folder is a path or a URI (``s3://bucket/run``): Ray writes its checkpoints through the
run's filesystem, and every file raypipe writes itself (provenance, export, report, summary) is
built in local scratch and copied in whole through :class:`~raypipe.store.files.StoreFiles`.

With ``search`` lists set, Ray Tune runs one TorchTrainer per hyperparameter combination
(Tune + Train together) and the best run is exported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from raypipe.config import TrainConfig
from raypipe.errors import ConfigError, SearchError
from raypipe.finetune.augment import build_transform
from raypipe.finetune.dataset import ImageDataset, ShardedWeightedSampler
from raypipe.finetune.export import (
    EXPORT_CONFIG,
    EXPORT_MODEL,
    export_backbone,
    extract_snippet,
    write_extract_config,
)
from raypipe.finetune.images import LabelledImages, image_folder, store_crops
from raypipe.finetune.loop import (
    MODEL_FILE,
    PROGRESS_FILE,
    TrainingState,
    evaluate,
    load_checkpoint,
    read_training_state,
    save_checkpoint,
    train_epoch,
)
from raypipe.finetune.summary import write_training_report
from raypipe.models.classifier import build_classifier
from raypipe.pipeline.provenance import record_train_run
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.tracking import TrainTracking, local_tracking, tune_callbacks
from raypipe.store.files import StoreFiles, ray_storage
from raypipe.store.run_folder import TUNE_RESTORE_STATE

log = logging.getLogger(__name__)

#: Called on every worker as ``hook(epoch, rank)`` before each epoch starts.
EpochHook = Callable[[int, int], None]

#: Settings that do not change what is learnt: a run differing only in these resumes.
_NOT_IN_RUN_NAME = {
    "run",
    "epochs",
    "early_stop_patience",
    "num_workers",
    "use_gpu",
    "cpus_per_worker",
    "loader_workers",
    "max_failures",
    "keep_checkpoints",
    "search",
    "tracking",
    "ray",
}


def space_values(config: TrainConfig) -> dict[str, list[Any]]:
    """The searched hyperparameters and their values (only those with values to try)."""
    return {
        key: list(values)
        for key in ("lr", "weight_decay", "batch_size", "dropout")
        if (values := getattr(config.search, key))
    }


def search_experiment(config: TrainConfig) -> str:
    """Folder (path or URI) of the Tune search of ``config``, named by its base run and the
    searched values: the same search resumes, an edited grid starts a new experiment instead
    of restoring the old space."""
    grid = hashlib.sha256(json.dumps(space_values(config), sort_keys=True).encode()).hexdigest()
    name = f"search-{run_name(config)}-{grid[:8]}"
    return StoreFiles(str(config.run)).location(f"tune/{name}")


@dataclass
class TrainSummary:
    """What a training run produced (files as paths or URIs, like the run folder)."""

    run: str
    best_epoch: int
    best_score: float
    epochs_done: int
    export_model: str
    extract_config: str
    report: str

    def line(self) -> str:
        """One line for people."""
        return (
            f"best epoch {self.best_epoch} of {self.epochs_done} "
            f"(val score {self.best_score:.3f}); exported {self.export_model}; report {self.report}"
        )


def load_images(config: TrainConfig) -> LabelledImages:
    """The labelled images of ``config.data`` (an image folder or a store's crops)."""
    data = config.data
    if data.source == "folder":
        if not data.root:
            raise ConfigError("data.root is not set: give the image folder to train on.")
        return image_folder(data.root, data.classes, data.val_fraction, config.seed)
    if not data.store:
        raise ConfigError("data.store is not set: give the feature store whose crops to train on.")
    return store_crops(
        data.store,
        data.crops_extractor,
        data.crops_version,
        data.classes,
        data.main_track_only,
        data.max_per_media,
        data.val_fraction,
        config.seed,
    )


def check_images(images: LabelledImages) -> None:
    """Fail early, in one sentence, on data a run cannot learn or validate from."""
    counts = images.class_counts("train")
    if (counts > 0).sum() < 2:
        raise ConfigError(
            "the training split holds fewer than 2 classes; check data.root/data.store and "
            "data.classes."
        )
    if len(images.indices("val")) == 0:
        raise ConfigError("no validation images: add a val split or set data.val_fraction above 0.")


def run_name(config: TrainConfig) -> str:
    """Name of the Ray Train run: a hash of the settings that change what is learnt."""
    settings = config.model_dump(mode="json", exclude=_NOT_IN_RUN_NAME)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"train-{digest}"


def _loaders(
    config: TrainConfig, images: LabelledImages, rank: int, world: int
) -> tuple[DataLoader, DataLoader]:
    import ray.train.torch

    augment = config.augment.model_dump()
    train_set = ImageDataset(
        images, "train", build_transform(config.data.image_size, True, **augment)
    )
    val_set = ImageDataset(images, "val", build_transform(config.data.image_size, False))
    common = {"num_workers": config.loader_workers, "pin_memory": config.use_gpu}
    if config.balanced:
        sampler = ShardedWeightedSampler(
            train_set.labels, len(images.classes), rank, world, config.seed
        )
        train = DataLoader(train_set, config.batch_size, sampler=sampler, **common)
        train = ray.train.torch.prepare_data_loader(train, add_dist_sampler=False)
    else:
        train = DataLoader(train_set, config.batch_size, shuffle=True, **common)
        train = ray.train.torch.prepare_data_loader(train)  # DistributedSampler over workers
    # Every worker scores the whole validation split, so all take the same decisions.
    val = DataLoader(val_set, config.batch_size * 2, shuffle=False, **common)
    val = ray.train.torch.prepare_data_loader(val, add_dist_sampler=False)
    return train, val


def _agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every worker (so all stop at the same epoch)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    tensor = torch.tensor([int(flag)])
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def train_worker(loop_config: dict[str, Any]) -> None:
    """The training loop of one Ray Train worker (see module docstring)."""
    import ray.train
    import ray.train.torch

    config = TrainConfig.model_validate(loop_config["config"])
    hook: EpochHook | None = loop_config.get("epoch_hook")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    torch.manual_seed(config.seed + rank)
    device = ray.train.torch.get_device()
    amp = config.mixed_precision and device.type == "cuda"

    images = load_images(config)
    n_classes = len(images.classes)
    model = build_classifier(config.arch, n_classes, config.init_checkpoint, config.dropout)
    model.to(device)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(
            model.parameters(), config.lr, weight_decay=config.weight_decay
        )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    state = TrainingState()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(Path(folder), model, optimizer, scheduler, scaler)
        if rank == 0:
            logging.getLogger(__name__).warning("resuming after epoch %d", state.epoch)
    model = ray.train.torch.prepare_model(model)
    train_loader, val_loader = _loaders(config, images, rank, world)
    meta = {
        "arch": config.arch,
        "classes": list(images.classes),
        "image_size": config.data.image_size,
    }
    if state.stopped_early:
        return
    for epoch in range(state.epoch + 1, config.epochs + 1):
        if hook is not None:
            hook(epoch, rank)
        sampler = getattr(train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        trained = train_epoch(model, train_loader, optimizer, device, scaler, amp)
        seconds = time.perf_counter() - start
        scores = evaluate(model, val_loader, device, n_classes, amp)
        score = scores[config.metric]
        scheduler.step(score if math.isfinite(score) else -math.inf)
        metrics = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": trained["loss"],
            "train_accuracy": trained["accuracy"],
            "images_per_s": trained["images"] * world / max(seconds, 1e-9),
            **{f"val_{name}": value for name, value in scores.items()},
        }
        stop = _agree(state.record(metrics, score, config.early_stop_patience))
        state.stopped_early = stop
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                save_checkpoint(Path(folder), model, optimizer, scheduler, scaler, state, meta)
                saved = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=f"epoch_{epoch:04d}")
        if stop:
            break


def build_trainer(
    config: TrainConfig,
    storage: str,
    name: str,
    epoch_hook: EpochHook | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """A TorchTrainer for ``config`` whose run lives in ``storage/name`` (restored by name);
    ``storage`` is a path or a URI, which Ray Train writes through its filesystem."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage_path, filesystem = ray_storage(storage)
    resources = {"CPU": config.cpus_per_worker}
    if config.use_gpu:
        resources["GPU"] = 1.0
    return TorchTrainer(
        train_worker,
        train_loop_config={"config": config.model_dump(mode="json"), "epoch_hook": epoch_hook},
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=config.keep_checkpoints,
                checkpoint_score_attribute=f"val_{config.metric}",
                checkpoint_score_order="max",
            ),
            callbacks=callbacks or [],
        ),
    )


def _trial(params: dict[str, Any], base: dict[str, Any] | None = None) -> None:
    """One Tune trial: a whole Ray Train run with ``params`` replacing fields of ``base``."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    config = TrainConfig.model_validate({**(base or {}), **params})
    trial = tune.get_context().get_trial_id()
    storage = StoreFiles(str(config.run)).location("tune/runs")
    # Every epoch's metrics stream to Tune; a last row names the trial's best checkpoint.
    result = build_trainer(
        config, storage, f"trial-{trial}", callbacks=[TuneReportCallback()]
    ).fit()
    metric = f"val_{config.metric}"
    latest, best = _latest_and_best(result, metric)
    score = max(metrics.get(metric, -math.inf) for _, metrics in result.best_checkpoints)
    tune.report({"best_score": score, "best_checkpoint": best, "latest_checkpoint": latest})


def _drop_tune_state(experiment: str) -> None:
    """Remove Ray Tune's pickled restore state of a search (see ``search.resume``)."""
    StoreFiles(experiment).delete_matching("", TUNE_RESTORE_STATE)


def _search(config: TrainConfig, tracking_folder: Path) -> tuple[TrainConfig, str, str]:
    """Ray Tune grid over ``config.search``; returns the best trial's config and the paths of
    its latest and best checkpoints (in the run's filesystem). An interrupted search resumes
    when run again. ``tracking_folder``: see :func:`~raypipe.pipeline.tracking.local_tracking`."""
    from ray import tune

    space = {key: tune.grid_search(values) for key, values in space_values(config).items()}
    base = config.model_dump(mode="json")
    # The trial function only waits on its Ray Train run, whose workers hold the resources
    # (Tune refuses an empty request, hence a sliver of a CPU).
    trainable = tune.with_resources(tune.with_parameters(_trial, base=base), {"cpu": 0.05})
    experiment = search_experiment(config)
    path, filesystem = ray_storage(experiment)
    if config.search.resume and tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        log.info("resuming the search in %s (search.resume: Ray Tune's own state)", experiment)
        tuner = tune.Tuner.restore(
            path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=filesystem,
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=config.search.max_concurrent_trials),
            run_config=tune.RunConfig(
                storage_path=path.rsplit("/", 1)[0],
                storage_filesystem=filesystem,
                name=path.rsplit("/", 1)[1],
                callbacks=tune_callbacks(config.tracking, config.run, "train", tracking_folder),
            ),
        )
    if not config.search.resume and StoreFiles(experiment).listing(""):
        log.info(
            "starting the search in %s afresh (set search.resume=true to restore it)", experiment
        )
        _drop_tune_state(experiment)
    try:
        results = tuner.fit()
    finally:
        if not config.search.resume:
            _drop_tune_state(experiment)
    best, best_score, best_path, latest_path = None, -math.inf, "", ""
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None or "best_checkpoint" not in metrics:
            log.warning("a training trial failed: %s", result.error)
            continue
        log.info("trial %s: best val %s %.3f", result.config, config.metric, metrics["best_score"])
        if metrics["best_score"] > best_score:
            best, best_score = result, metrics["best_score"]
            best_path, latest_path = metrics["best_checkpoint"], metrics["latest_checkpoint"]
    if best is None:
        raise SearchError(
            f"Every training trial failed; Ray Tune printed each trial's error above and keeps "
            f"it in error.txt under '{experiment}': fix its cause, then re-run the same command."
        )
    return TrainConfig.model_validate({**base, **best.config}), latest_path, best_path


def _latest_and_best(result: Any, metric: str) -> tuple[str, str]:
    """Paths of the latest checkpoint and of the best one by ``metric`` of a Train result."""
    latest = result.checkpoint
    if latest is None:
        raise SearchError(
            "The training run reported no checkpoint (it failed before its first epoch ended; "
            "its error is printed above): fix its cause, then re-run the same command."
        )
    best = max(result.best_checkpoints, key=lambda pair: pair[1].get(metric, -math.inf))[0]
    return latest.path, best.path


def _absolute(path: str | None) -> str | None:
    return path if path is None or "://" in path else str(Path(path).resolve())


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with local paths made absolute (Ray Train workers run in other folders);
    URIs are kept."""
    data = config.data.model_copy(
        update={"root": _absolute(config.data.root), "store": _absolute(config.data.store)}
    )
    return config.model_copy(
        update={
            "run": _absolute(str(config.run)) if config.run else None,
            "data": data,
            "init_checkpoint": _absolute(config.init_checkpoint),
        }
    )


def require_run(config: TrainConfig) -> None:
    """Fail in one sentence unless the run folder is given."""
    if config.run is None:
        raise ConfigError("train needs a run folder (--run) for checkpoints, report and export.")


def latest_checkpoint(config: TrainConfig) -> str | None:
    """The newest epoch checkpoint (path or URI) of ``config``'s Ray Train run in its run
    folder, which a re-run resumes from (the run is restored by name, :func:`run_name`); None
    when there is none. ``config`` as :func:`absolute_paths` returns it."""
    files = StoreFiles(str(config.run))
    folder = f"ray/{run_name(config)}"
    prefix = f"{files.path(folder)}/"
    saved = sorted(
        parts[0]
        for info in files.listing(folder)
        if len(parts := info.path[len(prefix) :].split("/")) == 2
        and parts[0].startswith("epoch_")
        and parts[1] == PROGRESS_FILE
    )
    return files.location(f"{folder}/{saved[-1]}") if saved else None


def checkpoint_state(checkpoint: str) -> TrainingState:
    """The :class:`TrainingState` of an epoch checkpoint folder (a path or a URI)."""
    return TrainingState(**json.loads(StoreFiles(checkpoint).read_bytes(PROGRESS_FILE)))


def run_train(config: TrainConfig, epoch_hook: EpochHook | None = None) -> TrainSummary:
    """Fine-tune (or search, then fine-tune) as configured; write report and export.

    ``epoch_hook(epoch, rank)`` runs on every worker before each epoch.
    """
    require_run(config)
    config = absolute_paths(config)
    images = load_images(config)
    check_images(images)
    log.info(
        "training %s on %d train / %d val images, classes %s",
        config.arch,
        len(images.indices("train")),
        len(images.indices("val")),
        images.classes,
    )
    files = StoreFiles(str(config.run))
    run = files.location()
    record_train_run(run, config)
    metric = f"val_{config.metric}"
    with ray_session(config.ray), local_tracking(run) as tracking_folder:
        if config.search.active():
            config, latest_path, best_path = _search(config, tracking_folder)
        else:
            name = run_name(config)
            params = config.model_dump(mode="json", exclude={"tracking", "ray"})
            tracking = TrainTracking(
                config.tracking, run, name, params, config.epochs, tracking_folder
            )
            with tracking as callbacks:
                trainer = build_trainer(config, files.location("ray"), name, epoch_hook, callbacks)
                result = trainer.fit()
            latest_path, best_path = _latest_and_best(result, metric)
    with tempfile.TemporaryDirectory(prefix="raypipe-train-") as scratch:
        summary = _write_outputs(config, images, files, Path(scratch), latest_path, best_path)
    return summary


def _write_outputs(
    config: TrainConfig,
    images: LabelledImages,
    files: StoreFiles,
    scratch: Path,
    latest_path: str,
    best_path: str,
) -> TrainSummary:
    """Export, report and summary of a finished training, built in ``scratch`` and copied
    into the run folder; ``latest_path`` and ``best_path`` are checkpoints in its filesystem."""
    from ray.train import Checkpoint

    run = files.location()
    with Checkpoint(latest_path, filesystem=files.fs).as_directory() as folder:
        state = read_training_state(Path(folder))
    with Checkpoint(best_path, filesystem=files.fs).as_directory() as folder:
        export_backbone(Path(folder) / MODEL_FILE, config.arch, scratch / "export")
    model_file = files.location(f"export/{EXPORT_MODEL}")
    snippet = extract_snippet(
        model_file,
        config.arch,
        config.data.image_size,
        store=config.data.store if config.data.source == "store" else None,
        manifest=_store_manifest(config, scratch / "export", files),
    )
    extract_config = files.location(f"export/{EXPORT_CONFIG}")
    write_extract_config(scratch / "export", snippet, run, shown=extract_config)
    summary_lines = {
        "architecture": config.arch,
        "classes": ", ".join(images.classes),
        "best epoch": f"{state.best_epoch} ({config.metric} {state.best_score:.4f})",
        "epochs run": f"{state.epoch}" + (" (stopped early)" if state.stopped_early else ""),
        "exported backbone": model_file,
        "re-extract with": f"raypipe extract --config {extract_config}",
    }
    report = write_training_report(state.history, scratch / "report", config.metric, summary_lines)
    summary = TrainSummary(
        run,
        state.best_epoch,
        state.best_score,
        state.epoch,
        model_file,
        extract_config,
        files.location(f"report/{report.name}"),
    )
    files.write_folder("export", scratch / "export")
    files.write_folder("report", scratch / "report")
    files.write_bytes(
        "train_summary.json",
        json.dumps({k: str(v) for k, v in summary.__dict__.items()}, indent=1).encode(),
    )
    return summary


def _store_manifest(config: TrainConfig, folder: Path, files: StoreFiles) -> str | None:
    """The training store's manifest, written into ``folder`` (the export's scratch copy) as
    a file the re-extraction reads (only rows with a path), when training read a store; its
    place in the run folder is returned."""
    if config.data.source != "store" or not config.data.store:
        return None
    from raypipe.store.feature_store import FeatureStore

    rows = FeatureStore(config.data.store).read_manifest()
    rows = rows[rows["path"].notna() & (rows["path"] != "")]
    if rows.empty:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(folder / "manifest.parquet", index=False)
    return files.location("export/manifest.parquet")
