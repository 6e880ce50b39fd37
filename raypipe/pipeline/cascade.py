"""`raypipe recipe cascade`: the coarse-to-fine cascade with smoothing (ABAW3) in Ray tasks.

The driver builds the frame-level data once (:func:`raypipe.recipes.frames.build_frame_data`)
and puts the features in Ray's object store. Each stage, the coarse classifier over class
groups and one fine classifier per group of 2+ classes, is a classifier of the registry
(scikit-learn or the torch MLP head) fitted in its own Ray task on the train frames with a
face and an expression label; stages run in parallel, Ray re-runs one whose worker dies
(``max_retries``), and each fitted stage is written into the run folder as soon as it
finishes (``recipes/cascade/stages/<stage>-<settings hash>.skops``), so running the same
command again fits only the stages still missing (a changed fine classifier refits the fine
stages only); a run whose stages are all there fits nothing.

The stages combine per class (:func:`raypipe.recipes.cascade.combine`) on every sampled
frame (frames without a face take their nearest face frame's outputs) into model
``cascade.expr``; its outputs smoothed over the window chosen on val become
``fused.smooth.cascade.expr`` (:func:`raypipe.fusion.smoothed_models.smooth_frame_models`),
which ``raypipe report`` scores and ``raypipe predict --format abaw-expr`` applies.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.config.cascade import CascadeRecipeConfig
from raypipe.errors import ConfigError
from raypipe.fusion.frame_smoothing import frame_score
from raypipe.fusion.smoothed_models import smooth_frame_models
from raypipe.labels import LABEL_SPACES
from raypipe.pipeline.runtime import ray_session
from raypipe.recipes.cascade import (
    COARSE,
    CascadeFrameModel,
    check_classifier,
    fine_groups,
    fit_stage,
    partition,
    stage_labels,
)
from raypipe.recipes.frames import FrameData, build_frame_data
from raypipe.recipes.multitask import fill_from_neighbours
from raypipe.store import artifacts
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

RECIPE = "cascade"
MODEL = f"{RECIPE}.expr"
SMOOTHED = f"fused.smooth.{MODEL}"
#: Settings that change no fitted stage (a run differing only in them reuses the stages).
_NOT_FITTED = {"run", "smoothing_windows", "cpus_per_task", "max_retries", "ray"}

#: Called in every stage's task as ``hook(stage)`` before it fits (tests kill a worker here).
StageHook = Callable[[str], None]


@dataclass
class CascadeSummary:
    """What a cascade run produced."""

    run: str
    models: list[str]
    groups: dict[str, list[str]]
    window_s: float
    scores: dict[str, dict[str, float]]
    #: Stages fitted by this invocation (empty when a re-run found them all done).
    fitted: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for people."""
        which = "test" if "test" in self.scores else "val"
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.scores.get(which, {}).items())
        return (
            f"{', '.join(self.models)} written to {self.run} (smoothing window "
            f"{self.window_s:g} s); {which}: {parts}"
        )


def stage_file(config: CascadeRecipeConfig, stage: str) -> str:
    """A stage's file in the run folder: named by the stage and a hash of the settings that
    change what it learns (the other kind of stage's classifier left out)."""
    other = "fine" if stage == COARSE else "coarse"
    settings = config.model_dump(mode="json", exclude={*_NOT_FITTED, other})
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return f"recipes/{RECIPE}/stages/{stage}-{digest}{artifacts.SUFFIX}"


def _absolute(path: str | None) -> str | None:
    return path if path is None or "://" in path else str(Path(path).resolve())


def _fit_remote(
    features: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    stage: str,
    spec: dict[str, Any],
    seed: int,
    balance: str,
    hook: StageHook | None,
) -> bytes:
    """One stage fitted in a Ray task; its skops bytes."""
    if hook is not None:
        hook(stage)
    model = fit_stage(features[rows], labels, spec["classifier"], spec["params"], seed, balance)
    return artifacts.dumps(model)


def _fit_missing(
    config: CascadeRecipeConfig,
    run: RunFolder,
    data: FrameData,
    stages: dict[str, tuple[np.ndarray, np.ndarray]],
    hook: StageHook | None,
) -> list[str]:
    """Fit, in parallel Ray tasks, the stages with no file (:func:`stage_file`) yet, writing
    each as it finishes; the stages fitted."""
    import ray

    missing = [s for s in stages if not run.files.exists(stage_file(config, s))]
    if not missing:
        return []
    with ray_session(config.ray):
        task = ray.remote(_fit_remote).options(
            num_cpus=config.cpus_per_task, max_retries=config.max_retries
        )
        features = ray.put(data.features)
        pending = {}
        for stage in missing:
            rows, labels = stages[stage]
            spec = (config.coarse if stage == COARSE else config.fine).model_dump(mode="json")
            ref = task.remote(
                features, rows, labels, stage, spec, config.seed, config.balance, hook
            )
            pending[ref] = stage
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            stage = pending.pop(done[0])
            run.files.write_bytes(stage_file(config, stage), ray.get(done[0]))
            log.info("cascade: stage %s fitted (%d frames)", stage, len(stages[stage][0]))
    return missing


def _scores(table: Any) -> dict[str, float]:
    """Expression macro-F1 per split over labelled frames."""
    out = {}
    for split in ("train", "val", "test"):
        rows = table[(table["split"] == split) & (table["label"] >= 0)]
        if len(rows):
            out[split] = frame_score("classification", rows)
    return out


def run_cascade(config: CascadeRecipeConfig, stage_hook: StageHook | None = None) -> CascadeSummary:
    """Fit (or reuse) the cascade's stages, then write ``cascade.expr`` and its smoothed copy
    into ``config.run`` (see the module docstring). ``stage_hook(stage)`` runs in each
    stage's task before it fits."""
    if not config.run:
        raise ConfigError("cascade needs a run folder (--run) for its stages and predictions.")
    check_classifier(config.coarse.classifier, "coarse")
    check_classifier(config.fine.classifier, "fine")
    data_config = config.data.model_copy(
        update={
            "store": _absolute(config.data.store),
            "annotations": _absolute(config.data.annotations),
            "labels_table": _absolute(config.data.labels_table),
        }
    )
    config = config.model_copy(update={"data": data_config, "run": _absolute(config.run)})
    data = build_frame_data(config.data, LABEL_SPACES.get(config.label_space).classes)
    groups = partition(data.classes, config.groups)
    train = np.flatnonzero((data.split == "train") & data.has_face & (data.expr >= 0))
    if not len(train):
        raise ConfigError(
            "no training frame with a face and an expression label: check data.store, "
            "data.annotations (or data.labels_table) and the splits."
        )
    if not ((data.split == "val") & (data.expr >= 0)).any():
        raise ConfigError(
            "no validation frame with an expression label (the smoothing window is chosen on "
            "val): add a val split or raise data.val_fraction."
        )
    stages: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for stage in [COARSE, *(f"fine.{g}" for g in fine_groups(groups))]:
        rows, labels = stage_labels(stage, data.expr[train], data.classes, groups)
        if len(rows):
            stages[stage] = (train[rows], labels)
        else:
            log.warning("cascade: %s has no training frame; its classes share its mass", stage)
    run = RunFolder(str(config.run))
    run.create({"recipe": RECIPE, "store": config.data.store, "classes": list(data.classes)})
    fitted = _fit_missing(config, run, data, stages, stage_hook)

    def load(stage: str) -> Any:
        path = stage_file(config, stage)
        return artifacts.loads(run.files.read_bytes(path), run.location(path))

    fine = {g: (load(f"fine.{g}") if f"fine.{g}" in stages else None) for g in fine_groups(groups)}
    model = CascadeFrameModel(data.classes, groups, load(COARSE), fine)
    face = data.has_face
    probs = np.zeros((len(data), len(data.classes)), np.float32)
    probs[face] = model.predict_proba(data.features[face])
    prior = probs[face].mean(0) if face.any() else np.full(len(data.classes), 1 / len(data.classes))
    probs, filled = fill_from_neighbours(probs, face, data.media_id, data.t_s, prior)
    record = {
        "recipe": RECIPE,
        "task": "classification",
        "modality": "visual" + ("+audio/text" if config.data.spans else ""),
        "pipeline": model,
        "extractors": list(config.data.extractors),
        "spans": [s.model_dump(mode="json") for s in config.data.spans],
        "classes": list(data.classes),
        "groups": groups,
        "stages": {
            "coarse": config.coarse.model_dump(mode="json"),
            "fine": config.fine.model_dump(mode="json"),
            "files": {s: stage_file(config, s) for s in stages},
        },
        "filled_frames": int(filled.sum()),
    }
    if len(config.data.extractors) == 1 and not config.data.spans:
        record["extractor"] = config.data.extractors[0]  # what predict extracts and reads
    run.save_model(MODEL, record)
    run.write_predictions(MODEL, data.media_id, data.split, data.expr, probs, start_s=data.t_s)
    smoothed = smooth_frame_models(run, [MODEL], tuple(config.smoothing_windows))[SMOOTHED]
    scores = {split: {"macro_f1": raw} for split, raw in _scores(run.predictions(MODEL)).items()}
    for split, value in _scores(run.predictions(SMOOTHED)).items():
        scores.setdefault(split, {})["macro_f1_smoothed"] = value
    run.files.write_bytes(
        f"recipes/{RECIPE}/scores.json",
        json.dumps({"scores": scores, "window_s": smoothed["window_s"]}, indent=1).encode(),
    )
    log.info("cascade scores: %s (window %g s)", scores, smoothed["window_s"])
    return CascadeSummary(
        run.root, [MODEL, SMOOTHED], groups, float(smoothed["window_s"]), scores, fitted
    )
