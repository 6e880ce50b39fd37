"""`raypipe predict`: a run's fitted models and fusion applied to new media.

The models applied say which feature sets they read; their extractors are rebuilt with the
settings recorded in the training store (so their versions match the ones the models were
fitted on) and run on the new media into a prediction store, computing only what is missing.

``--format csv`` (media level): each member of the fused model scores the media it has
features for, the fitted fusion combines them (a media a member could not score counts as
that modality missing), and a CSV is written: ``media_id, label, <one probability column per
class>, scored_by, missing, note``. Every media of the manifest gets its row; one that no
member could score gets the training prior (class frequencies of the train split), an empty
label and a note saying why.

``--format abaw-expr|abaw-au|abaw-va`` (frame level): the run's frame-level models of that
task (models whose predictions have ``start_s``) score the sampled frames of each video; each
video gets one file in the ABAW annotation format, a header line then exactly one line per
native video frame (the frame count from the probe); frames without a prediction take that of
the nearest predicted frame in time, and ``scoring.csv`` beside the files says, per video, how
many frames were predicted and filled, which models scored it and why a video got the prior.
A frame-level model is a fitted pipeline over one extractor's frames, or a sequence model
(``raypipe recipe sequence``) whose windows over several modalities are rebuilt as training
built them (:func:`model_frame_outputs` chooses by the record).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from raypipe.classify.classifiers import predict_proba_full
from raypipe.classify.feature_matrix import model_features
from raypipe.classify.targets import model_outputs
from raypipe.classify.trial_spec import TrialSpec
from raypipe.config import ExtractConfig, PredictConfig
from raypipe.config.base import DEFAULT_LABELS, load_config
from raypipe.errors import ConfigError, RaypipeError
from raypipe.extractors.registry import EXTRACTORS, build_extractor
from raypipe.fusion.frame_smoothing import frame_score, smooth_frames
from raypipe.fusion.rules import align_predictions
from raypipe.labels import LABEL_SPACES, LabelSpace, label_space
from raypipe.media import remote
from raypipe.media.datasets.abaw import (
    VA_NAMES,
    AbawTask,
    FrameLabels,
    fill_native_frames,
    format_annotation,
    frame_indices,
)
from raypipe.media.manifest import load_manifest
from raypipe.media.probe import probe
from raypipe.metrics import classification_scores
from raypipe.pipeline.extract import extractor_specs, run_extract
from raypipe.pipeline.fusion_store import fusion_task
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from raypipe.store.files import write_file
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)

#: The ``recipe`` of sequence model records, and the fields predict reads from them.
SEQUENCE_RECIPE = "sequence"
SEQUENCE_FIELDS = (
    "extractors",
    "spans",
    "modalities",
    "feature_mean",
    "feature_std",
    "network",
    "weights",
    "classes",
    "au_names",
    "head",
)


@dataclass
class PredictSummary:
    """What `raypipe predict` did."""

    #: Where the submission was written (the CSV, or the folder of annotation files).
    submission: str
    #: The fused model applied (csv), or the frame-level models averaged (abaw formats).
    fusion: str
    media: int
    scored: dict[str, int]
    scores: dict[str, float] | None
    #: Media no model could score (they got the training prior).
    prior: int = 0
    #: abaw formats: frames written in all, and how many of them were filled from neighbours.
    frames: int = 0
    filled: int = 0

    def line(self) -> str:
        """One line for the terminal."""
        scored = ", ".join(f"{m} {n}" for m, n in self.scored.items())
        text = f"predicted {self.media} media with {self.fusion} (scored by: {scored})"
        if self.prior:
            text += f"; {self.prior} no model could score got the training prior"
        if self.frames:
            text += f"; {self.frames} frames written, {self.filled} filled from neighbours"
        if self.scores:
            text += "; on their labels: " + ", ".join(
                f"{k} {v:.3f}" for k, v in self.scores.items()
            )
        return text


def selected_fusion(run: RunFolder) -> str:
    """Name of the classification fusion `raypipe fuse` selected (by cross-validated val
    score; fusions of multilabel or regression members, ``fused.<task>.<method>``, have their
    own selection and are never picked here)."""
    names = [n for n in run.fusions() if fusion_task(run.fusion(n)) == "classification"]
    if not names:
        raise ConfigError(
            f"run '{run.root}' has no fusion of classification models; run "
            f"`raypipe fuse --run {run.root}` with classification models."
        )
    for name in names:
        if run.fusion(name).get("selected"):
            return name
    return names[0]


def extract_config_for(
    records: dict[str, ExtractorRecord], needed: set[str], base: ExtractConfig | None
) -> ExtractConfig:
    """An extract config that enables exactly ``needed``, each with the settings the training
    store recorded (fields of its config section, and the frame sampling of visual
    extractors), on top of ``base`` (an extract YAML) or the defaults."""
    data: dict[str, Any] = (base or ExtractConfig()).model_dump(exclude={"manifest", "out", "ray"})
    sampling: dict[str, Any] = {}
    for name in EXTRACTORS:
        section = data.get(name)
        if not isinstance(section, dict):
            continue
        section["enabled"] = name in needed
        if name in needed and base is None and name in records:
            recorded = records[name].config
            fields = ExtractConfig.model_fields[name].annotation.model_fields
            section.update({k: v for k, v in recorded.items() if k in fields})
            if recorded.get("sampling"):
                if sampling and recorded["sampling"] != sampling:
                    raise ConfigError(
                        f"the training store's visual extractors were sampled differently "
                        f"({sampling} and {recorded['sampling']}); pass the extract YAML "
                        "that built it with --set extract=PATH."
                    )
                sampling = dict(recorded["sampling"])
    data["video"].update(sampling)
    return ExtractConfig.model_validate(data)


def check_versions(config: ExtractConfig, records: dict[str, ExtractorRecord], store: str) -> None:
    """Raise ConfigError when an extractor built from ``config`` would not reproduce the
    version the training store holds (the models would read different features)."""
    for name, options in extractor_specs(config):
        expected = records[name].version
        actual = build_extractor(name, options, config.video.model_dump()).version
        if actual != expected:
            raise ConfigError(
                f"extractor '{name}' would compute version {actual}, but the training store "
                f"'{store}' holds version {expected}; pass the extract YAML that built that "
                "store with --set extract=PATH."
            )


def _extractor_of(record: dict[str, Any], model: str, run: RunFolder) -> str:
    """The extractor whose features a model reads (its spec's feature set)."""
    extractor = record.get("extractor") or (record.get("spec") or {}).get("feature_set")
    if not extractor:
        raise ConfigError(
            f"model '{model}' of run '{run.root}' names no feature set (spec.feature_set); "
            "predict applies only models fitted on stored features."
        )
    return str(extractor).split(".", 1)[0]


def _model_extractors(record: dict[str, Any], model: str, run: RunFolder) -> set[str]:
    """Every extractor a model reads: a sequence model's visual extractors and span
    extractors, else the one extractor of its feature set."""
    if record.get("recipe") == SEQUENCE_RECIPE:
        spans = [str(s["extractor"]) for s in record.get("spans") or []]
        return {str(e) for e in record.get("extractors") or []} | set(spans)
    return {_extractor_of(record, model, run)}


def _extract_for(
    config: PredictConfig, run: RunFolder, records: dict[str, dict[str, Any]]
) -> FeatureStore:
    """Extract, into the prediction store, what the models' extractors still miss for the
    manifest's media (settings as the training store recorded them); the store."""
    training = FeatureStore(run.meta()["store"])
    training.require()
    stored = training.extractors()
    needed = set().union(*(_model_extractors(r, m, run) for m, r in records.items()))
    missing = sorted(needed - set(stored))
    if missing:
        raise ConfigError(
            f"the training store '{training.uri}' has no record of extractor(s) {missing}; "
            "predict needs the store the run was tuned on."
        )
    for model, record in records.items():
        pinned = dict(record.get("versions") or {})
        spans = record.get("spans") or []
        pinned |= {s["extractor"]: s["version"] for s in spans if s.get("version")}
        for name, version in pinned.items():
            if name in stored and stored[name].version != version:
                raise ConfigError(
                    f"model '{model}' of run '{run.root}' was trained on {name} version "
                    f"{version}, but extract reproduces only the training store's current "
                    f"version {stored[name].version}; retrain it on that version."
                )
    base = load_config(ExtractConfig, config.extract) if config.extract else None
    extract = extract_config_for(stored, needed, base)
    check_versions(extract, stored, training.uri)
    store_uri = config.store or run.location("predict/store")
    extract = extract.model_copy(
        update={
            "manifest": config.manifest,
            "out": store_uri,
            "ray": config.ray,
            "labels": run_labels(run),
        }
    )
    # run_extract starts (or joins) Ray itself, and none at all for a few media.
    summary = run_extract(extract)
    log.info("extract for predict: %s", summary.line())
    return FeatureStore(store_uri)


def _member_predictions(
    run: RunFolder, store: FeatureStore, records: dict[str, dict[str, Any]], labels: LabelSpace
) -> dict[str, pd.DataFrame]:
    tables = {}
    for member, record in records.items():
        matrix = model_features(store, record, labels)
        probs = predict_proba_full(record["pipeline"], matrix.x, len(labels))
        tables[member] = pd.DataFrame(
            {
                "media_id": matrix.media_ids,
                "split": matrix.split,
                "label": matrix.y,
                "probs": list(probs),
            }
        )
    return tables


def training_prior(run: RunFolder, models: list[str], task: str) -> np.ndarray:
    """What a media (or frame) no model could score gets: the train split's class
    frequencies (classification), rate of each label (multilabel) or mean of each target
    (regression), over the labelled rows of the first model with train rows (a label or
    target never labelled there: 0)."""
    for model in models:
        table = run.predictions(model)
        table = table[table["split"] == "train"]
        if task == "classification":
            labels = table["label"].to_numpy()
            labels = labels[labels >= 0]
            if len(labels):
                width = len(table["probs"].iloc[0])
                return np.bincount(labels, minlength=width)[:width] / len(labels)
        elif len(table):
            truth = np.stack(table["target"].to_numpy()).astype(np.float64)
            truth[truth < -1] = np.nan  # -5: unlabelled valence/arousal
            if task == "multilabel":
                truth[truth < 0] = np.nan
            labelled = np.isfinite(truth)
            if labelled.any():
                # A label or target never labelled in train: 0 (absent; neutral affect).
                sums = np.where(labelled, truth, 0.0).sum(axis=0)
                return sums / np.maximum(labelled.sum(axis=0), 1)
    raise ConfigError(
        f"run '{run.root}' holds no labelled train predictions of {models}, so there is no "
        "training prior for media no model can score; re-run the training with a train split."
    )


def unscored_reason(path: str) -> str:
    """Why no model could score a media, as far as a probe tells: unreadable (with the
    reader's reason), no video and no audio stream, or readable with no features found."""
    try:
        with remote.local_copy(str(path)) as local:
            info = probe(local)
    except (RaypipeError, OSError, ValueError) as exc:
        return f"unreadable ({str(exc).strip().rstrip('.')})"
    streams = [n for n, has in (("video", info.has_video), ("audio", info.has_audio)) if has]
    if not streams:
        return "no video and no audio stream"
    return f"readable ({' and '.join(streams)}), but no model found features (no face?)"


def _media_notes(
    ids: list[str],
    tables: dict[str, pd.DataFrame],
    modalities: dict[str, str],
) -> tuple[list[str], list[str], list[bool]]:
    """Per media: which models scored it, which modalities are missing (every model of
    that modality failed), and whether any model scored it."""
    scored_by, missing, any_scored = [], [], []
    by_model = {m: set(t["media_id"]) for m, t in tables.items()}
    for media_id in ids:
        members = [m for m in tables if media_id in by_model[m]]
        have = {modalities[m] for m in members}
        lost = sorted({modalities[m] for m in tables} - have)
        scored_by.append(";".join(members))
        missing.append(";".join(lost))
        any_scored.append(bool(members))
    return scored_by, missing, any_scored


def run_predict(config: PredictConfig) -> PredictSummary:
    """Extract what is missing for the new media, apply the models (and the fusion, csv),
    write the submission (a CSV, or one annotation file per video for abaw formats)."""
    if config.run is None or config.manifest is None:
        raise ConfigError("predict needs a run folder (--run) and a manifest (--manifest).")
    if config.format != "csv":
        return run_frame_predict(config)
    run = RunFolder(config.run)
    classes = list(run.meta()["classes"])
    labels = run_label_space(run)
    fusion = config.fusion or selected_fusion(run)
    if fusion not in run.fusions():
        raise ConfigError(
            f"fusion '{fusion}' is not in run '{run.root}' (known: {', '.join(run.fusions())})."
        )
    task = run.fusion(fusion).get("task", "classification")
    if task != "classification":
        raise ConfigError(
            f"fusion '{fusion}' of run '{run.root}' fuses {task} models and --format csv "
            "applies class fusions; use --format abaw-au or abaw-va for frame-level models."
        )
    members = list(run.fusion(fusion)["members"])
    fitted = run.load_fused_model(fusion)
    records = {m: run.load_model(m) for m in members}
    for member, record in records.items():
        TrialSpec.parse(record["spec"], f"model '{member}' of run '{run.root}'")
    store = _extract_for(config, run, records)
    tables = _member_predictions(run, store, records, labels)
    manifest, _ = load_manifest(config.manifest, labels, check_files=False)
    ids = [str(m) for m in manifest["media_id"]]
    paths = [str(p) for p in manifest["path"]]
    tables = {m: t[t["media_id"].isin(ids)] for m, t in tables.items()}
    member_probs = np.full((len(members), len(ids), len(classes)), np.nan, dtype=np.float32)
    if any(len(t) for t in tables.values()):
        aligned = align_predictions(tables)
        order = {media_id: i for i, media_id in enumerate(aligned.media_ids)}
        for row, media_id in enumerate(ids):
            if media_id in order:
                member_probs[:, row] = aligned.probs[:, order[media_id]]
    modalities = {m: str(records[m].get("modality", "?")) for m in members}
    scored_by, missing, any_scored = _media_notes(ids, tables, modalities)
    scored_mask = np.array(any_scored, dtype=bool)
    probs = np.zeros((len(ids), len(classes)), dtype=np.float64)
    if scored_mask.any():
        probs[scored_mask] = fitted.predict(member_probs[:, scored_mask])
    if not scored_mask.all():
        probs[~scored_mask] = training_prior(run, members, "classification")
    notes = []
    for row in range(len(ids)):
        if not scored_mask[row]:
            notes.append(
                f"no model could score it: {unscored_reason(paths[row])}; probabilities are "
                "the training prior (class frequencies of the train split)"
            )
        elif missing[row]:
            notes.append(f"scored without {missing[row].replace(';', ', ')}")
        else:
            notes.append("")
    predicted = [classes[i] if scored_mask[r] else "" for r, i in enumerate(probs.argmax(1))]
    submission = pd.DataFrame({"media_id": ids, "label": predicted})
    for c, name in enumerate(classes):
        submission[f"prob_{name}"] = probs[:, c].round(6)
    submission["scored_by"] = scored_by
    submission["missing"] = missing
    submission["note"] = notes
    out = str(config.out or run.location("predict/submission.csv"))
    write_file(out, submission.to_csv(index=False).encode())
    truth = _truth(manifest, ids, labels)
    known = (truth >= 0) & scored_mask
    scores = (
        classification_scores(truth[known], probs[known].argmax(1), len(classes))
        if known.any()
        else None
    )
    scored = {m: int(np.isin(ids, t["media_id"]).sum()) for m, t in tables.items()}
    log.info("submission written to %s", out)
    return PredictSummary(out, fusion, len(ids), scored, scores, prior=int((~scored_mask).sum()))


def run_labels(run: RunFolder) -> str:
    """The LABEL_SPACES name of a run's classes: run.json's ``labels``, else the registered
    space with exactly its classes, else the default (runs written before ``labels``)."""
    meta = run.meta()
    name = meta.get("labels")
    if name in LABEL_SPACES:
        return str(name)
    classes = tuple(meta["classes"])
    return next((n for n, s in LABEL_SPACES.items() if s.classes == classes), DEFAULT_LABELS)


def run_label_space(run: RunFolder) -> LabelSpace:
    """The run's classes (run.json) as a label space: the registered one it names (or with
    these classes, with its aliases), else a plain one."""
    space = LABEL_SPACES.get(run_labels(run))
    classes = list(run.meta()["classes"])
    return space if list(space.classes) == classes else label_space(classes)


def _truth(manifest: pd.DataFrame, ids: list[str], labels: Any) -> np.ndarray:
    if "label" not in manifest.columns:
        return np.full(len(ids), -1)
    by_id = manifest.set_index("media_id")["label"]
    out = []
    for media_id in ids:
        name = by_id.get(media_id)
        canonical = labels.canonical(name) if isinstance(name, str) and name else None
        out.append(labels.index(canonical) if canonical else -1)
    return np.array(out, dtype=int)


#: The ABAW task of each frame-level format, and the models' task it reads.
FRAME_FORMATS: dict[str, tuple[AbawTask, str]] = {
    "abaw-expr": ("expr", "classification"),
    "abaw-au": ("au", "multilabel"),
    "abaw-va": ("va", "regression"),
}


def frame_models(run: RunFolder, task: str) -> list[str]:
    """The run's frame-level models of ``task`` (predictions with ``start_s``; fused ones
    left out)."""
    found = []
    for model in run.models():
        if model.startswith("fused"):
            continue
        table = run.predictions(model)
        if "start_s" in table.columns and run.model_task(model, table) == task:
            found.append(model)
    return found


def _frame_outputs(
    store: FeatureStore, record: dict[str, Any], extractor: str, width: int
) -> pd.DataFrame:
    """One model's outputs on every sampled frame with features: media_id, timestamp_s,
    outputs (the main face track only, where the extractor tracks faces)."""
    table = store.frame_table(extractor)
    table = table[table["features"].notna()]
    if "main_track" in table.columns:
        table = table[table["main_track"].fillna(True).astype(bool)]
    if table.empty:
        return pd.DataFrame({"media_id": [], "timestamp_s": [], "outputs": []})
    x = np.nan_to_num(np.stack(table["features"].to_numpy()).astype(np.float32))
    outputs = model_outputs(record, x, width)
    return pd.DataFrame(
        {
            "media_id": table["media_id"].to_numpy(),
            "timestamp_s": table["timestamp_s"].to_numpy(np.float64),
            "outputs": list(np.asarray(outputs, np.float64)),
        }
    )


def _sequence_frame_outputs(
    run: RunFolder, store: FeatureStore, model: str, record: dict[str, Any]
) -> pd.DataFrame:
    """A ``sequence.<task>`` model's outputs on every sampled frame of the store's media:
    media_id, timestamp_s, outputs (softmax of the expression logits, sigmoid of the AU
    logits, or valence/arousal), computed as training did
    (:func:`raypipe.pipeline.sequence.apply_to_store`), and missing (the modalities the
    frame lacks, ';'-joined: no face, no audio/text span)."""
    from raypipe.pipeline.sequence import apply_to_store
    from raypipe.recipes.sequence import sigmoid, softmax

    data, (expr, au, va), masks = apply_to_store(record, run.read_bytes(record["weights"]), store)
    outputs = {"expr": softmax(expr), "au": sigmoid(au), "va": va}[str(record["head"])]
    keep = np.isfinite(outputs).all(axis=1)
    names = [str(m[0]) for m in record["modalities"]]
    missing = [";".join(n for n, on in zip(names, row, strict=True) if not on) for row in masks]
    return pd.DataFrame(
        {
            "media_id": data.media_id[keep],
            "timestamp_s": data.t_s[keep],
            "outputs": list(np.asarray(outputs[keep], np.float64)),
            "missing": np.asarray(missing, dtype=object)[keep],
        }
    )


def _absent_modalities(
    outputs: dict[str, pd.DataFrame], members: list[str], media: str
) -> set[str]:
    """The modalities a multimodal model (outputs with a ``missing`` column) had on none of
    ``media``'s scored frames."""
    absent: set[str] = set()
    for model in members:
        table = outputs[model]
        if "missing" not in table.columns:
            continue
        lacks = [
            set(filter(None, str(v).split(";")))
            for v in table.loc[table["media_id"] == media, "missing"]
        ]
        absent |= set.intersection(*lacks) if lacks else set()
    return absent


def _check_frame_model(run: RunFolder, model: str, record: dict[str, Any]) -> None:
    """Raise ConfigError when predict cannot apply a frame-level model to new media: it
    needs a fitted pipeline over one extractor's frames, or a sequence model's record with
    its weights file."""
    if record.get("recipe") == SEQUENCE_RECIPE:
        lacking = [k for k in SEQUENCE_FIELDS if record.get(k) is None]
        if lacking:
            raise ConfigError(
                f"model '{model}' of run '{run.root}' is a sequence model whose record lacks "
                f"{', '.join(lacking)}; re-run `raypipe recipe sequence` into that run."
            )
        if not run.has(str(record["weights"])):
            raise ConfigError(
                f"model '{model}' of run '{run.root}' names weights '{record['weights']}' that "
                "the run folder does not hold; re-run `raypipe recipe sequence` into that run."
            )
        return
    if record.get("pipeline") is None:
        raise ConfigError(
            f"model '{model}' of run '{run.root}' (recipe {record.get('recipe', '?')}) "
            "holds no fitted pipeline that predict can apply to frame features; predict "
            "applies frame-level models with a pipeline over one extractor's frames and "
            "sequence models."
        )


def model_frame_outputs(
    run: RunFolder, store: FeatureStore, model: str, record: dict[str, Any], width: int
) -> pd.DataFrame:
    """One frame-level model's outputs on the sampled frames of the store's media
    (media_id, timestamp_s seconds, outputs), by the kind of model its record holds: a
    sequence model (windows over several modalities) or a fitted pipeline (one extractor's
    frames)."""
    if record.get("recipe") == SEQUENCE_RECIPE:
        return _sequence_frame_outputs(run, store, model, record)
    return _frame_outputs(store, record, _extractor_of(record, model, run), width)


def _val_outputs_on(base: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """``table``'s outputs at the rows of ``base`` (same media; the row nearest in time,
    ``start_s`` seconds), NaN where ``table`` has no row of the media."""
    width = len(table["probs"].iloc[0]) if len(table) else 1
    out = np.full((len(base), width), np.nan)
    times = base["start_s"].to_numpy(np.float64)
    for media_id, rows in base.groupby("media_id", sort=False).indices.items():
        mine = table[table["media_id"] == media_id]
        if mine.empty:
            continue
        order = np.argsort(mine["start_s"].to_numpy(np.float64), kind="stable")
        t = mine["start_s"].to_numpy(np.float64)[order]
        values = np.stack(mine["probs"].to_numpy())[order]
        after = np.clip(np.searchsorted(t, times[rows]), 0, len(t) - 1)
        before = np.clip(after - 1, 0, len(t) - 1)
        nearest = np.where(
            np.abs(times[rows] - t[before]) <= np.abs(t[after] - times[rows]), before, after
        )
        out[rows] = values[nearest]
    return out


def frame_weights(
    run: RunFolder, models: list[str], task: str, thresholds: np.ndarray, step: float = 0.1
) -> dict[str, float]:
    """Weights (summing to 1) of the frame-level models of one task, searched on val: every
    weight vector on a grid of ``step`` over the simplex, scored by the task's challenge score
    (:func:`frame_score`; AU at ``thresholds``) of the weighted mean of the models' val
    outputs, each model's rows matched to the first model's val frames by nearest time; the
    first best wins (equal weights come first). One model, or no shared val frame: equal."""
    equal = {m: 1.0 / len(models) for m in models}
    base = run.predictions(models[0])
    base = base[base["split"] == "val"].reset_index(drop=True)
    if len(models) == 1 or base.empty:
        return equal
    stacks = [np.stack(base["probs"].to_numpy()).astype(np.float64)]
    for model in models[1:]:
        table = run.predictions(model)
        stacks.append(_val_outputs_on(base, table[table["split"] == "val"]))
    values = np.stack(stacks)
    shared = np.isfinite(values).all(axis=(0, 2))
    if not shared.any():
        return equal
    values, rows = values[:, shared], base[shared]
    steps = round(1 / step)
    grid = [
        np.array(c) / steps
        for c in itertools.product(range(steps + 1), repeat=len(models))
        if sum(c) == steps
    ]
    grid.insert(0, np.full(len(models), 1.0 / len(models)))
    limits = thresholds if task == "multilabel" else None
    scores = [
        frame_score(task, rows.assign(probs=list(np.tensordot(w, values, 1))), limits) for w in grid
    ]
    best = grid[int(np.nanargmax(scores))] if np.isfinite(scores).any() else grid[0]
    return {m: float(w) for m, w in zip(models, best, strict=True)}


def _smoothed(
    run: RunFolder, outputs: dict[str, pd.DataFrame], thresholds: np.ndarray
) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """Each model's frame outputs smoothed over the window its ``fused.smooth.<model>``
    record chose on val (models without one unchanged), and the AU thresholds averaged over
    the smoothed records' (chosen again on val after smoothing) where they have them."""
    smoothed, limits = dict(outputs), []
    for model, table in outputs.items():
        name = f"fused.smooth.{model}"
        record = run.load_model(name) if run.has_model(name) else None
        if not isinstance(record, dict) or record.get("method") != "smooth":
            continue
        window = float(record.get("window_s", 0.0))
        frames = table.rename(columns={"timestamp_s": "start_s", "outputs": "probs"})
        frames = smooth_frames(frames, window)
        smoothed[model] = frames.rename(columns={"start_s": "timestamp_s", "probs": "outputs"})
        if record.get("thresholds") is not None:
            limits.append(np.asarray(record["thresholds"], dtype=np.float64))
        log.info("%s: outputs smoothed over %g s (%s)", model, window, name)
    return smoothed, (np.mean(limits, axis=0) if limits else thresholds)


def _frame_labels(
    task: AbawTask, values: np.ndarray, names: list[str], thresholds: np.ndarray
) -> FrameLabels:
    if task == "expr":
        return FrameLabels.from_values("expr", values.argmax(axis=1), names=names)
    if task == "au":
        return FrameLabels.from_values("au", (values >= thresholds[None]).astype(int), names=names)
    return FrameLabels.from_values("va", np.clip(values, -1.0, 1.0), names=VA_NAMES)


def _video_frames(path: str) -> tuple[int, float] | str:
    """(frame count, fps) of a video from its probe, or why there is none."""
    try:
        with remote.local_copy(str(path)) as local:
            info = probe(local)
    except (RaypipeError, OSError, ValueError) as exc:
        return f"unreadable ({str(exc).strip().rstrip('.')})"
    if not info.has_video or info.fps <= 0:
        return "no video stream"
    frames = info.frame_count or info.header_frames or round(info.duration_s * info.fps)
    return (int(frames), float(info.fps)) if frames > 0 else "no video frames"


def run_frame_predict(config: PredictConfig) -> PredictSummary:
    """``--format abaw-*``: per video, one annotation file with one line per native frame
    (module docstring), and ``scoring.csv`` saying how each video was scored."""
    run = RunFolder(str(config.run))
    abaw_task, task = FRAME_FORMATS[config.format]
    models = frame_models(run, task)
    if not models:
        raise ConfigError(
            f"run '{run.root}' has no frame-level {task} model (predictions with start_s) for "
            f"--format {config.format}; train a frame-level recipe into it first."
        )
    records = {m: run.load_model(m) for m in models}
    for model, record in records.items():
        _check_frame_model(run, model, record)
    store = _extract_for(config, run, records)
    meta = run.meta()
    if abaw_task == "expr":
        names = list(meta["classes"])
    elif abaw_task == "au":
        names = list(records[models[0]].get("targets") or meta.get("targets") or [])
    else:
        names = list(VA_NAMES)
    width = len(names)
    thresholds = np.mean(
        [records[m].get("thresholds") or [0.5] * width for m in models], axis=0
    ).astype(np.float64)
    outputs = {m: model_frame_outputs(run, store, m, r, width) for m, r in records.items()}
    if config.smooth:
        outputs, thresholds = _smoothed(run, outputs, thresholds)
    weights = frame_weights(run, models, task, thresholds)
    if len(models) > 1:
        log.info("frame-level models' weights chosen on val: %s", weights)
    manifest, _ = load_manifest(config.manifest, run_label_space(run), check_files=False)
    prior = training_prior(run, models, task)
    modalities = {m: str(records[m].get("modality", "?")) for m in models}
    out = str(config.out or run.location(f"predict/{config.format}"))
    rows, frames_written, filled_total, prior_count = [], 0, 0, 0
    scored = dict.fromkeys(models, 0)
    for media_id, path in zip(manifest["media_id"], manifest["path"], strict=True):
        media_id = str(media_id)
        found = _video_frames(str(path))
        members = [m for m in models if (outputs[m]["media_id"] == media_id).any()]
        lost = sorted({modalities[m] for m in models} - {modalities[m] for m in members})
        lost += sorted(_absent_modalities(outputs, members, media_id) - set(lost))
        row = {"media_id": media_id, "file": "", "frames": 0, "predicted_frames": 0}
        row |= {"filled_frames": 0, "scored_by": ";".join(members), "missing": ";".join(lost)}
        if isinstance(found, str):
            rows.append(row | {"note": f"no file written: {found}"})
            prior_count += 1
            continue
        n_frames, fps = found
        note = f"scored without {', '.join(lost)}; " if lost and members else ""
        per_model, own = {}, np.zeros(n_frames, dtype=bool)
        for model in members:
            mine = outputs[model][outputs[model]["media_id"] == media_id]
            try:
                values, mine_own = fill_native_frames(
                    frame_indices(mine["timestamp_s"].to_numpy(), fps),
                    np.stack(mine["outputs"].to_numpy()),
                    n_frames,
                )
            except ValueError:  # every row past the video's frames
                continue
            per_model[model] = values.reshape(n_frames, width)
            own |= mine_own
        if per_model:
            # The val-chosen weights of the models that scored this video (equal if all 0).
            chosen = np.array([weights[m] for m in per_model])
            chosen = chosen / chosen.sum() if chosen.sum() > 0 else np.full(len(chosen), 1.0)
            chosen = chosen / chosen.sum()
            filled = np.tensordot(chosen, np.stack(list(per_model.values())), 1)
        else:
            filled, own = np.tile(prior, (n_frames, 1)), np.zeros(n_frames, dtype=bool)
            prior_count += 1
            note = (
                f"no model could score any frame: {unscored_reason(str(path))}; every frame "
                "holds the training prior"
            )
        for model in members:
            scored[model] += 1
        text = format_annotation(_frame_labels(abaw_task, filled, names, thresholds))
        write_file(remote.join(out, f"{media_id}.txt"), text.encode())
        n_own = int(own.sum())
        if own.any() and n_own < n_frames:
            note += (
                f"{n_frames - n_own} of {n_frames} frames filled from their nearest predicted frame"
            )
        frames_written += n_frames
        filled_total += n_frames - n_own
        rows.append(
            row
            | {
                "file": f"{media_id}.txt",
                "frames": n_frames,
                "predicted_frames": n_own,
                "filled_frames": n_frames - n_own,
                "note": note.strip().rstrip(";"),
            }
        )
    write_file(remote.join(out, "scoring.csv"), pd.DataFrame(rows).to_csv(index=False).encode())
    log.info("%s files written to %s", config.format, out)
    return PredictSummary(
        out,
        " + ".join(models),
        len(rows),
        scored,
        None,
        prior=prior_count,
        frames=frames_written,
        filled=filled_total,
    )
