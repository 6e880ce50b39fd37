"""Turning stored features into labelled media-level matrices for classifiers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raypipe.classify.pooling import POOLINGS, Pooler, make_pooler
from raypipe.errors import RaypipeError
from raypipe.labels import LabelSpace
from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import STATUS_OK


@dataclass
class FeatureMatrix:
    """Media-level features of one feature set with targets and splits.

    Attributes:
        name: '<extractor>' or '<extractor>.<pooling>'.
        modality: 'visual', 'audio' or 'text'.
        media_ids: (N,) ids.
        x: (N, D) float32 features (NaN where a media had no usable frame).
        y: classification (N,) int class index, -1 when unlabelled; multilabel (N, L) 0/1 and
            regression (N, K) float, NaN where a media has no target.
        split: (N,) 'train' | 'val' | 'test' | ''.
        pooler: the fitted pooler that made ``x`` from frames (None for media-level sets).
        task: 'classification', 'multilabel' or 'regression' (see :mod:`raypipe.classify.targets`).
        target_names: names of the L labels or K targets (empty for classification).
    """

    name: str
    modality: str
    media_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    pooler: Pooler | None = None
    task: str = "classification"
    target_names: list[str] = field(default_factory=list)

    def labelled(self) -> np.ndarray:
        """(N,) bool: rows with a class (classification) or with every target."""
        if self.task == "classification":
            return self.y >= 0
        return np.isfinite(self.y).all(axis=1)

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, x, y) of one split, labelled rows only."""
        mask = (self.split == split) & self.labelled()
        return self.media_ids[mask], self.x[mask], self.y[mask]


def frame_sequences(store: FeatureStore, extractor: str) -> dict[str, np.ndarray]:
    """(T, D) float32 frame vectors of every ok media of a frame-level extractor, in frame
    order; frames without features (no face) are left out, so T may be 0."""
    record = store.extractors()[extractor]
    media = store.media_table(extractor, record.version)
    ok_ids = set(media.loc[media["status"] == STATUS_OK, "media_id"])
    frames = store.frame_table(extractor, record.version)
    frames = frames[frames["media_id"].isin(ok_ids)].sort_values(["media_id", "frame_index"])
    sequences: dict[str, np.ndarray] = {}
    for media_id, group in frames.groupby("media_id", sort=False):
        rows = [np.asarray(v, np.float32) for v in group["features"] if v is not None]
        sequences[media_id] = np.stack(rows) if rows else np.zeros((0, record.dim), np.float32)
    for media_id in sorted(ok_ids - set(sequences)):  # set order varies by process
        sequences[media_id] = np.zeros((0, record.dim), np.float32)
    return sequences


def missing_extractor(store_uri: str, extractor: str, known: Iterable[str]) -> RaypipeError:
    """The error of a feature set whose extractor the store does not hold."""
    names = ", ".join(sorted(known)) or "none"
    return RaypipeError(
        f"Store '{store_uri}' has no extractor '{extractor}' (known: {names}); "
        "fix feature_sets in the config or run `raypipe extract` with it."
    )


def load_feature_matrix(
    store: FeatureStore,
    extractor: str,
    pooling: str | None,
    labels: LabelSpace,
    *,
    pooling_params: dict[str, Any] | None = None,
    pooler: Pooler | None = None,
    task: str = "classification",
    targets: pd.DataFrame | None = None,
    seed: int = 0,
    sequences: dict[str, np.ndarray] | None = None,
) -> FeatureMatrix:
    """Media-level features of ``extractor`` (frame-level ones pooled with ``pooling``).

    Only media whose status is ok are included. A pooling that learns (Fisher vectors, VLAD)
    is fitted on the train split's frames, unless an already fitted ``pooler`` is given (as a
    saved model carries it). Classification labels and splits come from the store's manifest;
    multilabel and regression targets from ``targets`` (indexed by media_id, one column per
    target; see :func:`raypipe.classify.targets.read_targets`), NaN where absent.
    ``sequences`` are the extractor's frames as :func:`frame_sequences` returns them, when
    the caller read them already (a search pools one reading several ways); else they are
    read here.
    """
    records = store.extractors()
    if extractor not in records:
        raise missing_extractor(store.uri, extractor, records)
    record = records[extractor]
    manifest = store.read_manifest().set_index("media_id")
    modality = record.modality
    if pooling is not None and POOLINGS.get(pooling).source == "text":
        vectors, pooler = _text_vectors(
            store, extractor, pooling, manifest, pooler, pooling_params, seed
        )
        name, modality = f"{extractor}.{pooling}", "text"
    elif record.level == "frame":
        if pooling is None:
            raise RaypipeError(f"Feature set '{extractor}' is frame-level and needs a pooling.")
        if sequences is None:
            sequences = frame_sequences(store, extractor)
        if pooler is None:
            pooler = make_pooler(pooling, pooling_params, seed)
            train = [s for m, s in sequences.items() if _text(manifest, m, "split") == "train"]
            pooler.fit(train)
        vectors = {m: pooler.encode(s) for m, s in sequences.items()}
        name = f"{extractor}.{pooling}"
    else:
        media = store.media_table(extractor, record.version)
        ok = media[media["status"] == STATUS_OK]
        vectors = {
            m: np.asarray(v, np.float32)
            for m, v in zip(ok["media_id"], ok["features"], strict=True)
        }
        name, pooler = extractor, None
    ids = np.array(sorted(vectors), dtype=object)
    split = np.array([_text(manifest, m, "split") for m in ids], dtype=object)
    x = np.stack([vectors[m] for m in ids]) if len(ids) else np.zeros((0, record.dim), np.float32)
    target_names: list[str] = []
    if task == "classification":
        y = np.array([_label_index(manifest, m, labels) for m in ids], dtype=int)
    else:
        target_names = [] if targets is None else [str(c) for c in targets.columns]
        if targets is None:
            y = np.full((len(ids), 0), np.nan, np.float32)
        else:
            y = targets.reindex([str(m) for m in ids]).to_numpy(np.float32)
    return FeatureMatrix(
        name, modality, ids, x.astype(np.float32), y, split, pooler, task, target_names
    )


def _text_vectors(
    store: FeatureStore,
    extractor: str,
    pooling: str,
    manifest: pd.DataFrame,
    pooler: Any,
    params: dict[str, Any] | None,
    seed: int,
) -> tuple[dict[str, np.ndarray], Any]:
    """Vectors of every transcribed media by a text pooling (TF-IDF): fitted on the train
    split's transcripts only, unless a fitted ``pooler`` (from a saved model) is given."""
    from raypipe.store.transcripts import load_transcripts

    try:
        texts = load_transcripts(store, extractor)
    except KeyError:
        raise RaypipeError(
            f"Feature set '{extractor}.{pooling}' needs transcript text; '{extractor}' stores "
            f"none. Use pooling {pooling} with a transcription extractor such as "
            "whisper_transcript."
        ) from None
    if pooler is None:
        pooler = make_pooler(pooling, params, seed)
        pooler.fit([t for m, t in texts.items() if _text(manifest, m, "split") == "train"])
    return {m: pooler.encode(t) for m, t in texts.items()}, pooler


def _text(manifest: pd.DataFrame, media_id: str, column: str) -> str:
    if column not in manifest.columns or media_id not in manifest.index:
        return ""
    value = manifest.at[media_id, column]
    return value if isinstance(value, str) else ""


def _label_index(manifest: pd.DataFrame, media_id: str, labels: LabelSpace) -> int:
    name = _text(manifest, media_id, "label")
    canonical = labels.canonical(name) if name else None
    return labels.index(canonical) if canonical else -1


def model_features(store: FeatureStore, record: dict, labels: LabelSpace) -> FeatureMatrix:
    """Media-level features of ``store`` in the form a saved model (``RunFolder.load_model``)
    was fitted on: its feature set, pooled the same way (with the record's fitted ``pooler``
    when it has one, e.g. the GMM of Fisher vectors learnt on the training split).

    This is the one place that turns a model record back into its input matrix, so prediction
    on new media and refits during a search read features identically. For multilabel and
    regression records ``y`` is all-NaN (the targets table is not part of the store).
    """
    feature_set = str(record["spec"]["feature_set"])
    extractor, _, pooling = feature_set.partition(".")
    return load_feature_matrix(
        store,
        extractor,
        pooling or None,
        labels,
        pooler=record.get("pooler"),
        task=str(record.get("task", "classification")),
    )
