"""`raypipe predict`: a run's fitted models and fusion applied to new media.

The fused model's members say which feature sets they read; their extractors are rebuilt with
the settings recorded in the training store (so their versions match the ones the models were
fitted on) and run on the new media into a prediction store, computing only what is missing.
Each member then scores the media it has features for, the fitted fusion combines them (a
media a member could not score counts as that modality missing), and a submission CSV is
written: ``media_id, label, <one probability column per class>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from raypipe.classify.classifiers import predict_proba_full
from raypipe.classify.feature_matrix import model_features
from raypipe.classify.trial_spec import TrialSpec
from raypipe.config import ExtractConfig, PredictConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.extractors.registry import EXTRACTORS, build_extractor
from raypipe.fusion.rules import align_predictions
from raypipe.labels import label_space
from raypipe.media.manifest import load_manifest
from raypipe.metrics import classification_scores
from raypipe.pipeline.extract import extractor_specs, run_extract
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from raypipe.store.files import write_file
from raypipe.store.run_folder import RunFolder

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    """What `raypipe predict` did."""

    #: Where the submission CSV was written (path or URI).
    submission: str
    fusion: str
    media: int
    scored: dict[str, int]
    scores: dict[str, float] | None

    def line(self) -> str:
        """One line for the terminal."""
        scored = ", ".join(f"{m} {n}" for m, n in self.scored.items())
        text = f"predicted {self.media} media with {self.fusion} (scored by: {scored})"
        if self.scores:
            text += "; on their labels: " + ", ".join(
                f"{k} {v:.3f}" for k, v in self.scores.items()
            )
        return text


def selected_fusion(run: RunFolder) -> str:
    """Name of the fused model `raypipe fuse` selected (by cross-validated val score)."""
    names = run.fusions()
    if not names:
        raise ConfigError(f"run '{run.root}' has no fusion; run `raypipe fuse --run {run.root}`.")
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


def _member_predictions(
    run: RunFolder, store: FeatureStore, members: list[str], n_classes: int, labels: Any
) -> dict[str, pd.DataFrame]:
    tables = {}
    for member in members:
        record = run.load_model(member)
        matrix = model_features(store, record, labels)
        probs = predict_proba_full(record["pipeline"], matrix.x, n_classes)
        tables[member] = pd.DataFrame(
            {
                "media_id": matrix.media_ids,
                "split": matrix.split,
                "label": matrix.y,
                "probs": list(probs),
            }
        )
    return tables


def run_predict(config: PredictConfig) -> PredictSummary:
    """Extract what is missing for the new media, apply members and fusion, write the CSV."""
    from raypipe.pipeline.runtime import ray_session

    if config.run is None or config.manifest is None:
        raise ConfigError("predict needs a run folder (--run) and a manifest (--manifest).")
    run = RunFolder(config.run)
    meta = run.meta()
    classes = list(meta["classes"])
    labels = label_space(classes)
    fusion = config.fusion or selected_fusion(run)
    if fusion not in run.fusions():
        raise ConfigError(
            f"fusion '{fusion}' is not in run '{run.root}' (known: {', '.join(run.fusions())})."
        )
    members = list(run.fusion(fusion)["members"])
    fitted = run.load_fused_model(fusion)
    training = FeatureStore(meta["store"])
    training.require()
    records = training.extractors()
    needed = {
        TrialSpec.parse(run.load_model(m)["spec"], f"model '{m}' of run '{run.root}'").extractor
        for m in members
    }
    missing = sorted(needed - set(records))
    if missing:
        raise ConfigError(
            f"the training store '{training.uri}' has no record of extractor(s) {missing}; "
            "predict needs the store the run was tuned on."
        )
    base = load_config(ExtractConfig, config.extract) if config.extract else None
    extract = extract_config_for(records, needed, base)
    check_versions(extract, records, training.uri)
    store_uri = config.store or run.location("predict/store")
    extract = extract.model_copy(
        update={"manifest": config.manifest, "out": store_uri, "ray": config.ray}
    )
    with ray_session(config.ray):
        summary = run_extract(extract)
    log.info("extract for predict: %s", summary.line())
    store = FeatureStore(store_uri)
    tables = _member_predictions(run, store, members, len(classes), labels)
    manifest, _ = load_manifest(config.manifest, labels, check_files=False)
    # Every media of the manifest gets a row, also those no member could score (uniform).
    ids = [str(m) for m in manifest["media_id"]]
    tables = {m: t[t["media_id"].isin(ids)] for m, t in tables.items()}
    member_probs = np.full((len(members), len(ids), len(classes)), np.nan, dtype=np.float32)
    if any(len(t) for t in tables.values()):
        aligned = align_predictions(tables)
        order = {media_id: i for i, media_id in enumerate(aligned.media_ids)}
        for row, media_id in enumerate(ids):
            if media_id in order:
                member_probs[:, row] = aligned.probs[:, order[media_id]]
    probs = fitted.predict(member_probs)
    submission = pd.DataFrame({"media_id": ids, "label": [classes[i] for i in probs.argmax(1)]})
    for c, name in enumerate(classes):
        submission[f"prob_{name}"] = probs[:, c].round(6)
    out = str(config.out or run.location("predict/submission.csv"))
    write_file(out, submission.to_csv(index=False).encode())
    truth = _truth(manifest, ids, labels)
    known = truth >= 0
    scores = (
        classification_scores(truth[known], probs[known].argmax(1), len(classes))
        if known.any()
        else None
    )
    scored = {m: int(np.isin(ids, t["media_id"]).sum()) for m, t in tables.items()}
    log.info("submission written to %s", out)
    return PredictSummary(out, fusion, len(ids), scored, scores)


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
