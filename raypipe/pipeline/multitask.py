"""`raypipe recipe multitask`: the multitask recipe on Ray Train.

The driver builds the frame-level data once (:func:`raypipe.recipes.frames.build_frame_data`),
standardises features on the training frames, adds ML-ROS clones of rare-label frames and
puts the arrays in Ray's object store. Two Ray Train runs follow: the teacher (masked
ground-truth losses), then the student (ground truth plus the teacher's soft outputs). Every
epoch each run reports its validation scores with a checkpoint (``<run>/ray/<name>/``); a run
is named by a hash of the settings that change what it learns, so running the same command
again resumes each run after its last checkpoint (a finished run trains nothing; more epochs
continue it), and a lost worker resumes from the last checkpoint (``max_failures``).

From the best student checkpoint (the teacher's without a student) the driver predicts every
sampled frame (frames without a face take their nearest face frame's outputs), chooses each
AU's threshold on val, and writes models ``multitask.expr``, ``multitask.au`` and
``multitask.va`` with their frame-level predictions (``start_s``) into the run folder.
"""

from __future__ import annotations

import io
import json
import logging
import math
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raypipe.config.multitask import MultitaskConfig
from raypipe.errors import ConfigError
from raypipe.labels import LABEL_SPACES
from raypipe.pipeline.recipe_runs import (
    MODEL_FILE,
    OPTIMIZER_FILE,
    PROGRESS_FILE,
    absolute,
    fit_run,
    load_state,
    run_name,
)
from raypipe.pipeline.runtime import ray_session
from raypipe.recipes.frames import FrameData, build_frame_data
from raypipe.recipes.multitask import (
    TASK_KINDS,
    MultitaskFrameModel,
    Standardiser,
    au_thresholds,
    batch_targets,
    batches,
    build_network,
    fill_from_neighbours,
    label_sets,
    ml_ros,
    predict,
    task_scores,
    train_step,
)
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

RECIPE = "multitask"
#: Settings that change neither stage's learning (a run differing only in them resumes).
_NOT_LEARNT = {
    "run",
    "teacher_epochs",
    "student_epochs",
    "num_workers",
    "use_gpu",
    "cpus_per_worker",
    "max_failures",
    "ray",
    "threshold_grid",
}
_STUDENT_ONLY = {"distill_alpha", "temperature"}


@dataclass
class MultitaskSummary:
    """What a multitask run produced."""

    run: str
    models: list[str]
    scores: dict[str, dict[str, float]]
    thresholds: list[float]
    #: Epochs trained by this invocation, per stage (0 when a re-run found them done).
    epochs_trained: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for people."""
        test = self.scores.get("test") or self.scores.get("val", {})
        parts = ", ".join(f"{k} {v:.3f}" for k, v in test.items() if k != "score")
        which = "test" if "test" in self.scores else "val"
        return f"{', '.join(self.models)} written to {self.run}; {which}: {parts}"


def stage_name(config: MultitaskConfig, stage: str) -> str:
    """Name of a stage's Ray Train run: a hash of what changes its learning (the student's
    includes the teacher's epochs, whose outputs it learns from)."""
    exclude = set(_NOT_LEARNT) | (_STUDENT_ONLY if stage == "teacher" else set())
    settings = config.model_dump(mode="json", exclude=exclude)
    if stage == "student":
        settings["teacher_epochs"] = config.teacher_epochs
    return run_name(f"{RECIPE}-{stage}", settings)


def _state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def stage_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of a stage: train its shard of the (oversampled) training rows,
    score the whole val split, report with a checkpoint (rank 0) every epoch."""
    import ray
    import ray.train
    import ray.train.torch

    config = MultitaskConfig.model_validate(loop_config["config"])
    stage, epochs = loop_config["stage"], loop_config["epochs"]
    data = FrameData.from_arrays(ray.get(loop_config["data"]))
    train_index, val_rows = loop_config["train_index"], loop_config["val_rows"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    torch.manual_seed(config.seed)
    model = build_network(
        data.dim, len(data.classes), len(data.au_names), config.hidden, config.dropout
    )
    optimizer = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    teacher = None
    if loop_config.get("teacher") is not None:
        teacher = build_network(data.dim, len(data.classes), len(data.au_names), config.hidden, 0.0)
        teacher.load_state_dict(load_state(loop_config["teacher"]))
    progress: dict[str, Any] = {"epoch": 0, "history": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            model.load_state_dict(torch.load(Path(folder) / MODEL_FILE, weights_only=True))
            optimizer.load_state_dict(torch.load(Path(folder) / OPTIMIZER_FILE, weights_only=True))
            progress = json.loads((Path(folder) / PROGRESS_FILE).read_text())
        if rank == 0:
            log.warning("%s: resuming after epoch %d", stage, progress["epoch"])
    net = ray.train.torch.prepare_model(model) if world > 1 else model
    features = torch.from_numpy(np.array(data.features, np.float32))
    hook = loop_config.get("epoch_hook")
    for epoch in range(progress["epoch"] + 1, epochs + 1):
        if hook is not None:
            hook(stage, epoch, rank)
        # Every worker draws the same order and takes an equal share of it, so all run the
        # same number of steps (DDP's all-reduce needs that); up to world - 1 rows wait for
        # the next epoch's order.
        order = np.random.default_rng(config.seed * 1000 + epoch).permutation(train_index)
        share = len(order) // world
        shard = order[rank * share : (rank + 1) * share]
        losses = []
        for index in batches(shard, config.batch_size, config.seed * 1000 + epoch):
            parts = train_step(
                net,  # type: ignore[arg-type]
                optimizer,
                features[index],
                batch_targets(data, index),
                config.task_weights,
                teacher,
                config.distill_alpha,
                config.temperature,
            )
            losses.append(parts["loss"])
        expr, au, va = predict(model, data.features[val_rows])
        local = data.take(val_rows)
        scores = task_scores(local, np.arange(len(local)), expr, au, va)
        metrics = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            **{f"val_{k}": (v if math.isfinite(v) else 0.0) for k, v in scores.items()},
        }
        progress["epoch"] = epoch
        progress["history"].append({**metrics, "invocation": loop_config["invocation"]})
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                torch.save(model.state_dict(), Path(folder) / MODEL_FILE)
                torch.save(optimizer.state_dict(), Path(folder) / OPTIMIZER_FILE)
                (Path(folder) / PROGRESS_FILE).write_text(json.dumps(progress))
                saved = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=f"epoch_{epoch:04d}")


def _fit_stage(
    config: MultitaskConfig,
    run: RunFolder,
    stage: str,
    epochs: int,
    common: dict[str, Any],
    teacher: bytes | None,
) -> tuple[bytes, list[dict[str, Any]]]:
    """Run (or resume) one stage on Ray Train; its best checkpoint's weights and its
    history (every epoch's metrics, with the invocation that trained it)."""
    return fit_run(
        run,
        stage_name(config, stage),
        stage_worker,
        {**common, "stage": stage, "epochs": epochs, "teacher": teacher},
        num_workers=config.num_workers,
        cpus_per_worker=config.cpus_per_worker,
        use_gpu=config.use_gpu,
        max_failures=config.max_failures,
        epochs=epochs,
    )


def _prepare(config: MultitaskConfig) -> tuple[FrameData, np.ndarray, np.ndarray, Standardiser]:
    """The frame data (features standardised), the oversampled training rows and the val
    rows, with one-sentence errors for data a run cannot learn or validate from."""
    classes = LABEL_SPACES.get(config.label_space).classes
    data = build_frame_data(config.data, classes)
    train_rows = np.flatnonzero((data.split == "train") & data.has_face & data.labelled())
    val_rows = np.flatnonzero((data.split == "val") & data.has_face & data.labelled())
    if not len(train_rows):
        raise ConfigError(
            "no labelled training frame with a face: check data.store, data.annotations (or "
            "data.labels_table) and the splits."
        )
    if not len(val_rows):
        raise ConfigError(
            "no labelled validation frame with a face (AU thresholds and checkpoints are "
            "chosen on val): add a val split or raise data.val_fraction."
        )
    standardiser = Standardiser.fit(data.features[train_rows])
    data.features = standardiser(data.features)
    clones = ml_ros(label_sets(data)[train_rows], config.oversample, config.seed)
    log.info(
        "multitask: %d frames (%d train, %d val labelled with a face), %d ML-ROS clones",
        len(data),
        len(train_rows),
        len(val_rows),
        len(clones),
    )
    return data, np.concatenate([train_rows, train_rows[clones]]), val_rows, standardiser


#: Called on every worker as ``hook(stage, epoch, rank)`` before each epoch starts.
StageHook = Callable[[str, int, int], None]


def run_multitask(config: MultitaskConfig, epoch_hook: StageHook | None = None) -> MultitaskSummary:
    """Train (or resume) the teacher and the student, then write models, frame-level
    predictions and scores into ``config.run`` (see the module docstring).
    ``epoch_hook(stage, epoch, rank)`` runs on every worker before each epoch."""
    import ray

    if not config.run:
        raise ConfigError("multitask needs a run folder (--run) for checkpoints and predictions.")
    data_config = config.data.model_copy(
        update={
            "store": absolute(config.data.store),
            "annotations": absolute(config.data.annotations),
            "labels_table": absolute(config.data.labels_table),
        }
    )
    config = config.model_copy(update={"data": data_config, "run": absolute(config.run)})
    data, train_index, val_rows, standardiser = _prepare(config)
    run = RunFolder(str(config.run))
    run.create(
        {
            "recipe": RECIPE,
            "store": config.data.store,
            "classes": list(data.classes),
            "targets": list(data.au_names),
        }
    )
    invocation = uuid.uuid4().hex
    with ray_session(config.ray):
        common = {
            "config": config.model_dump(mode="json"),
            "data": ray.put(data.to_arrays()),
            "train_index": train_index,
            "val_rows": val_rows,
            "invocation": invocation,
            "epoch_hook": epoch_hook,
        }
        weights, history = _fit_stage(config, run, "teacher", config.teacher_epochs, common, None)
        histories = {"teacher": history}
        if config.student_epochs:
            weights, histories["student"] = _fit_stage(
                config, run, "student", config.student_epochs, common, weights
            )
    trained = {
        stage: sum(1 for h in rows if h.get("invocation") == invocation)
        for stage, rows in histories.items()
    }
    return write_outputs(config, run, data, val_rows, standardiser, weights, histories, trained)


def write_outputs(
    config: MultitaskConfig,
    run: RunFolder,
    data: FrameData,
    val_rows: np.ndarray,
    standardiser: Standardiser,
    weights: bytes,
    histories: dict[str, list[dict[str, Any]]],
    trained: dict[str, int],
) -> MultitaskSummary:
    """Predict every frame with the final network, choose AU thresholds on val, write the
    three models and their predictions, and log the scores per split."""
    model = build_network(data.dim, len(data.classes), len(data.au_names), config.hidden, 0.0)
    model.load_state_dict(load_state(weights))
    expr, au, va = predict(model, data.features)
    face = data.has_face
    prior = [expr[face].mean(0), au[face].mean(0), va[face].mean(0)] if face.any() else None
    outputs = []
    for values, default in zip((expr, au, va), prior or [None] * 3, strict=True):
        filled, mask = fill_from_neighbours(
            values, face, data.media_id, data.t_s, default if default is not None else 0.0
        )
        outputs.append(filled)
    expr, au, va = outputs
    thresholds = au_thresholds(
        au[val_rows], data.au[val_rows], data.au_mask[val_rows], config.threshold_grid
    )
    scores: dict[str, dict[str, float]] = {}
    for split in ("train", "val", "test"):
        rows = np.flatnonzero((data.split == split) & data.labelled())
        if len(rows):
            scores[split] = task_scores(data, rows, expr, au, va, thresholds)
            log.info("multitask %s scores: %s", split, scores[split])
    model_file = f"recipes/{RECIPE}/model.pt"
    run.files.write_bytes(model_file, weights)
    common = {
        "recipe": RECIPE,
        "modality": "visual" + ("+audio/text" if config.data.spans else ""),
        "weights": model_file,
        "extractors": list(config.data.extractors),
        "spans": [s.model_dump(mode="json") for s in config.data.spans],
        "feature_mean": standardiser.mean.tolist(),
        "feature_std": standardiser.std.tolist(),
        "network": {"hidden": config.hidden, "in_dim": data.dim},
        "classes": list(data.classes),
        "au_names": list(data.au_names),
        "filled_frames": int(mask.sum()),
        "history": histories,
    }
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    start_s = data.t_s
    no_label = np.full(len(data), -1)
    au_truth = np.where(data.au_mask, data.au, np.nan)
    va_truth = np.where(data.va_mask, data.va, np.nan)
    outputs_by_task = {
        "expr": (data.expr, expr, None, list(data.classes)),
        "au": (no_label, au, au_truth, list(data.au_names)),
        "va": (no_label, va, va_truth, ["valence", "arousal"]),
    }
    names = []
    for task, (labels, probs, targets, target_names) in outputs_by_task.items():
        name = f"{RECIPE}.{task}"
        record = {**common, "task": TASK_KINDS[task], "head": task, "targets": target_names}
        record["pipeline"] = MultitaskFrameModel(
            task,
            state,
            standardiser.mean,
            standardiser.std,
            len(data.classes),
            len(data.au_names),
            config.hidden,
            thresholds if task == "au" else None,
        )
        if len(config.data.extractors) == 1 and not config.data.spans:
            record["extractor"] = config.data.extractors[0]  # what predict extracts and reads
        if task == "au":
            record["thresholds"] = thresholds.tolist()
        run.save_model(name, record)
        run.write_predictions(
            name, data.media_id, data.split, labels, probs, targets=targets, start_s=start_s
        )
        names.append(name)
    run.files.write_bytes(
        f"recipes/{RECIPE}/scores.json",
        json.dumps({"scores": scores, "thresholds": thresholds.tolist()}, indent=1).encode(),
    )
    return MultitaskSummary(run.root, names, scores, thresholds.tolist(), trained)
