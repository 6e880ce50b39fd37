"""`raypipe recipe sequence`: the windowed multimodal sequence recipe on Ray Train.

The driver builds the frame-level data once (:func:`raypipe.recipes.frames.build_frame_data`;
each visual extractor and each audio/text span extractor is one modality), notes which
modalities each frame has (before standardising features on the training frames), cuts every
media into windows of ``window`` frames every ``hop`` frames and puts it all in Ray's object
store. One Ray Train run (:func:`raypipe.pipeline.recipe_runs.fit_run`, named by a hash of
the settings that change learning) trains :class:`MultimodalSequenceModel` on the training
media's windows with losses masked to labelled frames with a face, and reports the val scores
of frame outputs averaged over overlapping windows with a checkpoint every epoch; the same
command again resumes after the last epoch, a lost worker resumes from the last checkpoint.

From the best checkpoint the driver predicts every window of every media, averages each
frame's outputs over the windows holding it, chooses AU thresholds on val, and writes models
``sequence.<task>`` (one row per sampled frame, ``start_s``) and ``sequence.clip`` (one row
per media: the mean of its frames' expression logits) into the run folder.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from raypipe.config.frames import SpanFeaturesConfig
from raypipe.config.sequence import SequenceConfig
from raypipe.errors import ConfigError
from raypipe.labels import LABEL_SPACES
from raypipe.models.sequence import MultimodalSequenceModel
from raypipe.pipeline.recipe_runs import (
    absolute,
    fit_run,
    load_state,
    report_epoch,
    resume_checkpoint,
    run_name,
)
from raypipe.pipeline.runtime import ray_session
from raypipe.recipes.frames import FrameData, build_frame_data, frame_features
from raypipe.recipes.multitask import TASK_KINDS, Standardiser, au_thresholds
from raypipe.recipes.sequence import (
    Modality,
    clip_outputs,
    frame_outputs,
    media_windows,
    modalities,
    modality_masks,
    sequence_scores,
    sigmoid,
    softmax,
    train_step,
)
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

RECIPE = "sequence"
#: Settings that do not change what is learnt (a run differing only in them resumes).
_NOT_LEARNT = {
    "run",
    "epochs",
    "num_workers",
    "use_gpu",
    "cpus_per_worker",
    "max_failures",
    "ray",
    "threshold_grid",
    "clip",
}
#: Called on every worker as ``hook(epoch, rank)`` before each epoch starts.
EpochHook = Callable[[int, int], None]


@dataclass
class SequenceSummary:
    """What a sequence run produced."""

    run: str
    models: list[str]
    scores: dict[str, dict[str, float]]
    windows: int
    #: Epochs trained by this invocation (0 when a re-run found them done).
    epochs_trained: int = 0
    thresholds: list[float] = field(default_factory=list)

    def line(self) -> str:
        """One line for people."""
        which = "test" if self.scores.get("test") else "val"
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.scores.get(which, {}).items())
        return f"{', '.join(self.models)} written to {self.run}; {which}: {parts}"


def training_name(config: SequenceConfig) -> str:
    """Name of the Ray Train run: a hash of what changes its learning."""
    return run_name(RECIPE, config.model_dump(mode="json", exclude=_NOT_LEARNT))


def build_model(
    config: SequenceConfig, parts: list[Modality], data: FrameData
) -> MultimodalSequenceModel:
    """The recipe's network for the data's modalities and label spaces."""
    return MultimodalSequenceModel(
        [p.dim for p in parts], len(data.classes), len(data.au_names), config.hidden, config.dropout
    )


def model_from_record(record: dict[str, Any], weights: bytes) -> MultimodalSequenceModel:
    """The network of a ``sequence.<task>`` model record (as :func:`build_model` builds it:
    one encoder per recorded modality, the record's classes, action units and hidden size)
    with ``weights`` (the bytes of its ``weights`` file) loaded, in eval mode."""
    network = record["network"]
    model = MultimodalSequenceModel(
        [stop - start for _, start, stop in record["modalities"]],
        len(record["classes"]),
        len(record["au_names"]),
        int(network["hidden"]),
        float(network.get("dropout", 0.1)),
    )
    model.load_state_dict(load_state(weights))
    model.eval()
    return model


def apply_to_store(
    record: dict[str, Any], weights: bytes, store: FeatureStore
) -> tuple[FrameData, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A trained sequence model applied to every media of ``store`` (media it never saw
    included, no labels needed), exactly as training predicted: the frame features of the
    record's extractors and spans side by side (:func:`frame_features`; an extractor with no
    face or valid span row in the store keeps the record's width, marked missing), each frame's
    modality mask from the raw features, the features standardised with the record's
    training mean and std (not refitted), windows of the record's ``window`` frames every
    ``hop``, and each frame's outputs averaged over the windows holding it. Returns the
    frame rows (labels unset, split 'test'), the expression logits (N, C), AU logits
    (N, K) and valence/arousal (N, 2), and the (N, M) bool modality masks (columns in the
    order of ``record["modalities"]``)."""
    spans = [SpanFeaturesConfig.model_validate(s) for s in record["spans"]]
    # An extractor without any face or valid span row here (a silent video, no face found)
    # keeps the recorded width, its columns zero and marked missing as in training.
    widths = {str(name): int(stop) - int(start) for name, start, stop in record["modalities"]}
    rows, features, names = frame_features(
        store, record["extractors"], spans, record.get("versions") or {}, widths
    )
    parts = modalities(names)
    found = [[p.name, p.start, p.stop] for p in parts]
    expected = [list(m) for m in record["modalities"]]
    if len(rows) and found != expected:
        raise ConfigError(
            f"store '{store.uri}' gives modalities {found} (name, first column, last+1) but the "
            f"model was trained on {expected}; extract with the training store's settings."
        )
    n = len(rows)
    k = len(record["au_names"])
    data = FrameData(
        media_id=rows["media_id"].astype(str).to_numpy().astype(object),
        split=np.full(n, "test", dtype=object),
        t_s=rows["timestamp_s"].to_numpy(np.float64),
        frame_index=rows["frame_index"].to_numpy(np.int64),
        features=features.astype(np.float32),
        has_face=rows["has_face"].to_numpy(bool),
        expr=np.full(n, -1, np.int64),
        au=np.zeros((n, k), np.float32),
        au_mask=np.zeros((n, k), bool),
        va=np.zeros((n, 2), np.float32),
        va_mask=np.zeros((n, 2), bool),
        classes=tuple(record["classes"]),
        au_names=tuple(record["au_names"]),
        feature_names=names,
    )
    masks = modality_masks(data, parts, record["extractors"])
    mean = np.asarray(record["feature_mean"], np.float32)
    std = np.asarray(record["feature_std"], np.float32)
    data.features = Standardiser(mean, std)(data.features)
    network = record["network"]
    windows, _ = media_windows(data, int(network["window"]), int(network["hop"]))
    if not len(windows):
        empty = [np.zeros((0, w), np.float32) for w in (len(record["classes"]), k, 2)]
        return data, (empty[0], empty[1], empty[2]), masks
    model = model_from_record(record, weights)
    return data, frame_outputs(model, data.features, masks, windows), masks


def sequence_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: train its share of the training windows, score val frames
    (outputs averaged over windows), report with a checkpoint (rank 0) every epoch."""
    import ray
    import ray.train
    import ray.train.torch

    config = SequenceConfig.model_validate(loop_config["config"])
    arrays = ray.get(loop_config["data"])
    data = FrameData.from_arrays(arrays["frames"])
    parts = [Modality(*p) for p in arrays["modalities"]]
    masks, windows = arrays["masks"], arrays["windows"]
    train_windows, val_windows = arrays["train_windows"], arrays["val_windows"]
    val_rows = arrays["val_rows"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    torch.manual_seed(config.seed)
    model = build_model(config, parts, data)
    optimizer = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    progress = resume_checkpoint(model, optimizer)
    if progress["epoch"] and rank == 0:
        log.warning("sequence: resuming after epoch %d", progress["epoch"])
    net = ray.train.torch.prepare_model(model) if world > 1 else model
    hook = loop_config.get("epoch_hook")
    for epoch in range(progress["epoch"] + 1, config.epochs + 1):
        if hook is not None:
            hook(epoch, rank)
        # Same order on every worker, equal shares: DDP needs the same number of steps.
        order = np.random.default_rng(config.seed * 1000 + epoch).permutation(train_windows)
        share = len(order) // world
        shard = order[rank * share : (rank + 1) * share]
        losses = [
            train_step(
                net,  # type: ignore[arg-type]
                optimizer,
                data,
                masks,
                windows[shard[start : start + config.batch_size]],
                config.tasks,
            )
            for start in range(0, len(shard), config.batch_size)
        ]
        outputs = frame_outputs(model, data.features, masks, windows[val_windows])
        scores = sequence_scores(data, val_rows, outputs, config.tasks)
        metrics = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            **{f"val_{k}": (v if np.isfinite(v) else 0.0) for k, v in scores.items()},
            "invocation": loop_config["invocation"],
        }
        report_epoch(model, optimizer, progress, metrics, rank)


def _prepare(
    config: SequenceConfig,
) -> tuple[FrameData, list[Modality], np.ndarray, np.ndarray, np.ndarray, Standardiser]:
    """Standardised frame data, its modalities and per-frame modality masks, the windows
    (row positions) and each window's split; one-sentence errors for data a run cannot learn
    or validate from."""
    classes = LABEL_SPACES.get(config.label_space).classes
    data = build_frame_data(config.data, classes)
    parts = modalities(data.feature_names)
    masks = modality_masks(data, parts, config.data.extractors)
    learn = data.has_face & data.labelled()
    if not ((data.split == "train") & learn).any():
        raise ConfigError(
            "no labelled training frame with a face: check data.store, data.annotations (or "
            "data.labels_table) and the splits."
        )
    if not ((data.split == "val") & learn).any():
        raise ConfigError(
            "no labelled validation frame with a face (checkpoints and AU thresholds are "
            "chosen on val): add a val split or raise data.val_fraction."
        )
    standardiser = Standardiser.fit(data.features[(data.split == "train") & data.has_face])
    data.features = standardiser(data.features)
    windows, _ = media_windows(data, config.window, config.hop)
    window_split = data.split[windows[:, 0]]
    log.info(
        "sequence: %d frames, %d modalities (%s), %d windows of %d frames every %d",
        len(data),
        len(parts),
        ", ".join(p.name for p in parts),
        len(windows),
        config.window,
        config.hop,
    )
    return data, parts, masks, windows, window_split, standardiser


def run_sequence(config: SequenceConfig, epoch_hook: EpochHook | None = None) -> SequenceSummary:
    """Train (or resume) the sequence model, then write models, frame-level and clip-level
    predictions and scores into ``config.run`` (see the module docstring).
    ``epoch_hook(epoch, rank)`` runs on every worker before each epoch."""
    import ray

    if not config.run:
        raise ConfigError("sequence needs a run folder (--run) for checkpoints and predictions.")
    data_config = config.data.model_copy(
        update={
            "store": absolute(config.data.store),
            "annotations": absolute(config.data.annotations),
            "labels_table": absolute(config.data.labels_table),
        }
    )
    config = config.model_copy(update={"data": data_config, "run": absolute(config.run)})
    data, parts, masks, windows, window_split, standardiser = _prepare(config)
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
    val_rows = np.flatnonzero((data.split == "val") & data.has_face & data.labelled())
    with ray_session(config.ray):
        arrays = {
            "frames": data.to_arrays(),
            "modalities": [(p.name, p.start, p.stop) for p in parts],
            "masks": masks,
            "windows": windows,
            "train_windows": np.flatnonzero(window_split == "train"),
            "val_windows": np.flatnonzero(window_split == "val"),
            "val_rows": val_rows,
        }
        loop_config = {
            "config": config.model_dump(mode="json"),
            "data": ray.put(arrays),
            "invocation": invocation,
            "epoch_hook": epoch_hook,
        }
        weights, history = fit_run(
            run,
            training_name(config),
            sequence_worker,
            loop_config,
            num_workers=config.num_workers,
            cpus_per_worker=config.cpus_per_worker,
            use_gpu=config.use_gpu,
            max_failures=config.max_failures,
            epochs=config.epochs,
        )
    trained = sum(1 for h in history if h.get("invocation") == invocation)
    model = build_model(config, parts, data)
    model.load_state_dict(load_state(weights))
    outputs = frame_outputs(model, data.features, masks, windows)
    return write_outputs(
        config, run, data, parts, outputs, weights, history, trained, len(windows), standardiser
    )


def write_outputs(
    config: SequenceConfig,
    run: RunFolder,
    data: FrameData,
    parts: list[Modality],
    outputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    weights: bytes,
    history: list[dict[str, Any]],
    trained: int,
    n_windows: int,
    standardiser: Standardiser,
) -> SequenceSummary:
    """Choose AU thresholds on val, write ``sequence.<task>`` (every sampled frame) and
    ``sequence.clip`` (every media), log and return the scores per split."""
    expr, au, va = outputs
    val = np.flatnonzero((data.split == "val") & data.has_face & data.labelled())
    thresholds = au_thresholds(
        sigmoid(au[val]), data.au[val], data.au_mask[val], config.threshold_grid
    )
    scores: dict[str, dict[str, float]] = {}
    for split in ("train", "val", "test"):
        rows = np.flatnonzero((data.split == split) & data.has_face & data.labelled())
        if len(rows):
            scores[split] = sequence_scores(data, rows, outputs, config.tasks, thresholds)
            log.info("sequence %s scores: %s", split, scores[split])
    model_file = f"recipes/{RECIPE}/model.pt"
    run.files.write_bytes(model_file, weights)
    common = {
        "recipe": RECIPE,
        "modality": "+".join(p.name for p in parts),
        "weights": model_file,
        "extractors": list(config.data.extractors),
        "spans": [s.model_dump(mode="json") for s in config.data.spans],
        "modalities": [[p.name, p.start, p.stop] for p in parts],
        "feature_mean": standardiser.mean.tolist(),
        "feature_std": standardiser.std.tolist(),
        "network": {
            "hidden": config.hidden,
            "dropout": config.dropout,
            "window": config.window,
            "hop": config.hop,
        },
        "versions": dict(config.data.versions),
        "classes": list(data.classes),
        "au_names": list(data.au_names),
        "history": history,
    }
    no_label = np.full(len(data), -1)
    by_task = {
        "expr": (data.expr, softmax(expr), None, list(data.classes)),
        "au": (no_label, sigmoid(au), np.where(data.au_mask, data.au, np.nan), list(data.au_names)),
        "va": (no_label, va, np.where(data.va_mask, data.va, np.nan), ["valence", "arousal"]),
    }
    names = []
    for task in config.tasks:
        labels, probs, targets, target_names = by_task[task]
        name = f"{RECIPE}.{task}"
        record = {**common, "task": TASK_KINDS[task], "head": task, "targets": target_names}
        if task == "au":
            record["thresholds"] = thresholds.tolist()
        run.save_model(name, record)
        run.write_predictions(
            name, data.media_id, data.split, labels, probs, targets=targets, start_s=data.t_s
        )
        names.append(name)
    if config.clip:
        manifest = FeatureStore(str(config.data.store)).read_manifest()
        given = manifest.set_index("media_id")["label"].to_dict() if "label" in manifest else {}
        clips = clip_outputs(data, expr, given)
        name = f"{RECIPE}.clip"
        run.save_model(name, {**common, "task": "classification", "head": "clip", "level": "media"})
        run.write_predictions(
            name,
            clips["media_id"].to_numpy(object),
            clips["split"].to_numpy(object),
            clips["label"].to_numpy(np.int64),
            np.stack(clips["probs"].to_numpy()),
        )
        names.append(name)
    run.files.write_bytes(
        f"recipes/{RECIPE}/scores.json",
        json.dumps({"scores": scores, "thresholds": thresholds.tolist()}, indent=1).encode(),
    )
    return SequenceSummary(run.root, names, scores, n_windows, trained, thresholds.tolist())
