"""`raypipe recipe group`: the group-level recipe (EmotiW 2018 group) on Ray Train.

The driver reads one row per image from the feature store
(:func:`raypipe.recipes.group.build_group_data`: the mean of its global scene rows, the
features of its detected faces padded with a mask, its label and split), standardises both on
the training images and puts them in Ray's object store. Each member (``members``: how faces
are merged, ``mean``, ``attention`` or ``context_attention``) is one Ray Train run
(:func:`raypipe.pipeline.recipe_runs.fit_run`, named by a hash of the settings that change
its learning and the merge), reporting val accuracy with a checkpoint every epoch; the same
command again resumes after the last epoch (a member that ended for the epochs asked is read
from ``RUN/trained/`` without Ray Train), a lost worker resumes from the last checkpoint.

From each member's best checkpoint the driver predicts every image, chooses the ensemble
weights on val (:func:`raypipe.recipes.group.ensemble_weights`) and writes models
``group.<merge>`` and ``fused.ensemble.group`` with one prediction row per image into the run
folder.
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

from raypipe.config.group import GroupConfig
from raypipe.errors import ConfigError
from raypipe.labels import LABEL_SPACES
from raypipe.metrics import classification_scores
from raypipe.pipeline.recipe_runs import (
    absolute,
    fit_run,
    load_state,
    report_epoch,
    resume_checkpoint,
    run_name,
)
from raypipe.pipeline.runtime import ray_session
from raypipe.recipes.group import (
    FeatureScaling,
    GroupData,
    build_group_data,
    build_network,
    ensemble_weights,
    fuse_members,
    predict_probs,
    train_step,
)
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

RECIPE = "group"
#: Name of the ensemble's model in the run folder.
ENSEMBLE = f"fused.ensemble.{RECIPE}"
#: Settings that do not change what a member learns (a run differing only in them resumes).
_NOT_LEARNT = {
    "run",
    "epochs",
    "members",
    "weight_step",
    "num_workers",
    "use_gpu",
    "cpus_per_worker",
    "max_failures",
    "ray",
}
#: Called on every worker as ``hook(member, epoch, rank)`` before each epoch starts.
EpochHook = Callable[[str, int, int], None]


@dataclass
class GroupSummary:
    """What a group run produced."""

    run: str
    models: list[str]
    #: Accuracy, macro-F1 and UAR per model and split.
    scores: dict[str, dict[str, dict[str, float]]]
    #: Ensemble weight per member, chosen on val.
    weights: dict[str, float]
    images: int
    #: Epochs trained by this invocation per member (0 when a re-run found them done).
    epochs_trained: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One line for people."""
        which = "test" if self.scores.get(ENSEMBLE, {}).get("test") else "val"
        parts = ", ".join(
            f"{name} {split_scores[which]['accuracy']:.3f}"
            for name, split_scores in self.scores.items()
            if which in split_scores
        )
        return f"{', '.join(self.models)} written to {self.run}; {which} accuracy: {parts}"


def member_name(config: GroupConfig, merge: str) -> str:
    """Name of a member's Ray Train run: a hash of what changes its learning."""
    settings = config.model_dump(mode="json", exclude=_NOT_LEARNT)
    return run_name(f"{RECIPE}-{merge}", {**settings, "merge": merge})


def _network(config: GroupConfig, data: GroupData, merge: str) -> torch.nn.Module:
    return build_network(
        config,
        merge,
        data.scene.shape[1],
        data.faces.shape[2],
        len(data.classes),  # type: ignore[arg-type]
    )


def group_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker of one member: train its share of the training images, score val
    accuracy, report with a checkpoint (rank 0) every epoch."""
    import ray
    import ray.train
    import ray.train.torch

    config = GroupConfig.model_validate(loop_config["config"])
    merge = loop_config["merge"]
    data = GroupData.from_arrays(ray.get(loop_config["data"]))
    train_rows, val_rows = data.rows_of("train"), data.rows_of("val")
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    torch.manual_seed(config.seed)
    model = _network(config, data, merge)
    optimizer = torch.optim.AdamW(model.parameters(), config.lr, weight_decay=config.weight_decay)
    progress = resume_checkpoint(model, optimizer)
    if progress["epoch"] and rank == 0:
        log.warning("group %s: resuming after epoch %d", merge, progress["epoch"])
    net = ray.train.torch.prepare_model(model) if world > 1 else model
    hook = loop_config.get("epoch_hook")
    for epoch in range(progress["epoch"] + 1, config.epochs + 1):
        if hook is not None:
            hook(merge, epoch, rank)
        # Same order on every worker, equal shares: DDP needs the same number of steps.
        order = np.random.default_rng(config.seed * 1000 + epoch).permutation(train_rows)
        share = len(order) // world
        shard = order[rank * share : (rank + 1) * share]
        losses = [
            train_step(net, optimizer, data, shard[start : start + config.batch_size])
            for start in range(0, len(shard), config.batch_size)
        ]
        probs = predict_probs(model, data, val_rows)
        scores = classification_scores(data.label[val_rows], probs.argmax(1), len(data.classes))
        metrics = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_accuracy": scores["accuracy"],
            "val_macro_f1": scores["macro_f1"],
            "val_score": scores["accuracy"],
            "invocation": loop_config["invocation"],
        }
        report_epoch(model, optimizer, progress, metrics, rank)


def _prepare(config: GroupConfig) -> tuple[GroupData, FeatureScaling]:
    """Standardised group data and its scaling; one-sentence errors for data a run cannot
    learn or validate from."""
    space = LABEL_SPACES.get(config.label_space)
    data = build_group_data(config.data, space)
    train = data.rows_of("train")
    if not len(train):
        raise ConfigError(
            "no labelled training image: check data.store, the manifest's labels and splits."
        )
    if not len(data.rows_of("val")):
        raise ConfigError(
            "no labelled validation image (checkpoints and ensemble weights are chosen on "
            "val): add a val split or raise data.val_fraction."
        )
    scaling = FeatureScaling.fit(data, train)
    return scaling.apply(data), scaling


def run_group(config: GroupConfig, epoch_hook: EpochHook | None = None) -> GroupSummary:
    """Train (or resume) every member, weight the ensemble on val, then write models,
    predictions and scores into ``config.run`` (see the module docstring).
    ``epoch_hook(member, epoch, rank)`` runs on every worker before each epoch."""
    import ray

    if not config.run:
        raise ConfigError("group needs a run folder (--run) for checkpoints and predictions.")
    data_config = config.data.model_copy(update={"store": absolute(config.data.store)})
    config = config.model_copy(update={"data": data_config, "run": absolute(config.run)})
    data, scaling = _prepare(config)
    run = RunFolder(str(config.run))
    run.create({"recipe": RECIPE, "store": config.data.store, "classes": list(data.classes)})
    invocation = uuid.uuid4().hex
    trained: dict[str, int] = {}
    members: dict[str, tuple[bytes, list[dict[str, Any]]]] = {}
    with ray_session(config.ray):
        reference = ray.put(data.to_arrays())
        for merge in config.members:
            loop_config = {
                "config": config.model_dump(mode="json"),
                "merge": merge,
                "data": reference,
                "invocation": invocation,
                "epoch_hook": epoch_hook,
            }
            members[merge] = fit_run(
                run,
                member_name(config, merge),
                group_worker,
                loop_config,
                num_workers=config.num_workers,
                cpus_per_worker=config.cpus_per_worker,
                use_gpu=config.use_gpu,
                max_failures=config.max_failures,
                epochs=config.epochs,
            )
            history = members[merge][1]
            trained[merge] = sum(1 for h in history if h.get("invocation") == invocation)
    probs = {}
    for merge, (weights, _) in members.items():
        model = _network(config, data, merge)
        model.load_state_dict(load_state(weights))
        probs[merge] = predict_probs(model, data)
    return write_outputs(config, run, data, scaling, members, probs, trained)


def write_outputs(
    config: GroupConfig,
    run: RunFolder,
    data: GroupData,
    scaling: FeatureScaling,
    members: dict[str, tuple[bytes, list[dict[str, Any]]]],
    probs: dict[str, np.ndarray],
    trained: dict[str, int],
) -> GroupSummary:
    """Choose the ensemble weights on val, write ``group.<merge>`` and the ensemble (one row
    per image), log and return the scores per model and split."""
    names = list(probs)
    stacked = np.stack([probs[m] for m in names])
    val = data.rows_of("val")
    chosen = ensemble_weights(stacked[:, val], data.label[val], config.weight_step)
    log.info(
        "group ensemble weights %s (val accuracy %.3f)",
        dict(zip(names, chosen.weights.round(3).tolist(), strict=True)),
        chosen.accuracy,
    )
    outputs = {f"{RECIPE}.{m}": probs[m] for m in names}
    outputs[ENSEMBLE] = fuse_members(stacked, chosen.weights)
    common = {
        "recipe": RECIPE,
        "task": "classification",
        "modality": "visual",
        "level": "media",
        "classes": list(data.classes),
        "scene_extractor": config.data.scene_extractor,
        "face_extractor": config.data.face_extractor,
        "max_faces": config.data.max_faces,
    }
    for merge in names:
        weights_file = f"recipes/{RECIPE}/{merge}.pt"
        run.files.write_bytes(weights_file, members[merge][0])
        record = {
            **common,
            "merge": merge,
            "weights": weights_file,
            "network": {"hidden": config.hidden, "dropout": config.dropout},
            "scene_mean": scaling.scene_mean.tolist(),
            "scene_std": scaling.scene_std.tolist(),
            "face_mean": scaling.face_mean.tolist(),
            "face_std": scaling.face_std.tolist(),
            "history": members[merge][1],
        }
        run.save_model(f"{RECIPE}.{merge}", record)
    run.save_model(
        ENSEMBLE,
        {
            **common,
            "members": [f"{RECIPE}.{m}" for m in names],
            "member_weights": chosen.weights.tolist(),
            "val_accuracy": chosen.accuracy,
            "val_log_loss": chosen.log_loss,
        },
    )
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name, model_probs in outputs.items():
        run.write_predictions(name, data.media_id, data.split, data.label, model_probs)
        scores[name] = {}
        for split in ("train", "val", "test"):
            rows = data.rows_of(split)
            if len(rows):
                scores[name][split] = classification_scores(
                    data.label[rows], model_probs[rows].argmax(1), len(data.classes)
                )
        log.info("%s scores: %s", name, scores[name])
    weights = dict(zip(names, chosen.weights.tolist(), strict=True))
    run.files.write_bytes(
        f"recipes/{RECIPE}/scores.json",
        json.dumps({"scores": scores, "weights": weights}, indent=1).encode(),
    )
    return GroupSummary(run.root, list(outputs), scores, weights, len(data), trained)


def plan_group(config: GroupConfig) -> Any:
    """The ``--dry-run`` of the recipe: images, images with faces, faces and labelled images
    per split (reads the store; starts no Ray, writes nothing)."""
    import pandas as pd

    from raypipe.pipeline.dry_run import DryRun

    data = build_group_data(config.data, LABEL_SPACES.get(config.label_space))
    rows = []
    for split in ("train", "val", "test"):
        at = data.split == split
        rows.append(
            {
                "split": split,
                "images": int(at.sum()),
                "with_faces": int(data.face_mask[at].any(1).sum()),
                "faces": int(data.face_mask[at].sum()),
                "labelled": int((at & (data.label >= 0)).sum()),
            }
        )
    summary = {
        "recipe": RECIPE,
        "run": str(config.run),
        "scene_features": int(data.scene.shape[1]),
        "face_features": int(data.faces.shape[2]),
        "classes": list(data.classes),
        "members": [f"{RECIPE}.{m}" for m in config.members],
    }
    lines = [
        f"recipe {RECIPE}: {data.scene.shape[1]} scene and {data.faces.shape[2]} face features "
        f"per image, members {', '.join(config.members)}, run folder {config.run}"
    ]
    return DryRun(summary, {"splits": ("images per split", pd.DataFrame(rows))}, lines)
