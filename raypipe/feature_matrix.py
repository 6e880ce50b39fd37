"""Turning stored features into labelled media-level matrices for classifiers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raypipe.errors import RaypipeError
from raypipe.labels import LabelSpace
from raypipe.pooling import pool
from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import STATUS_OK


@dataclass
class FeatureMatrix:
    """Media-level features of one feature set with labels and splits.

    Attributes:
        name: '<extractor>' or '<extractor>.<pooling>'.
        modality: 'visual', 'audio' or 'text'.
        media_ids: (N,) ids.
        x: (N, D) float32 features (NaN where a media had no usable frame).
        y: (N,) int class index, -1 when unlabelled.
        split: (N,) 'train' | 'val' | 'test' | ''.
    """

    name: str
    modality: str
    media_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    split: np.ndarray

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, x, y) of one split, labelled rows only."""
        mask = (self.split == split) & (self.y >= 0)
        return self.media_ids[mask], self.x[mask], self.y[mask]


def load_feature_matrix(
    store: FeatureStore, extractor: str, pooling: str | None, labels: LabelSpace
) -> FeatureMatrix:
    """Media-level features of ``extractor`` (frame-level ones pooled with ``pooling``).

    Only media whose status is ok are included; labels and splits come from the store's manifest.
    """
    records = store.extractors()
    if extractor not in records:
        known = ", ".join(sorted(records)) or "none"
        raise RaypipeError(
            f"Store '{store.uri}' has no extractor '{extractor}' (known: {known}); "
            "fix feature_sets in the config or run `raypipe extract` with it."
        )
    record = records[extractor]
    media = store.media_table(extractor, record.version)
    ok_ids = set(media.loc[media["status"] == STATUS_OK, "media_id"])
    if record.level == "frame":
        if pooling is None:
            raise RaypipeError(f"Feature set '{extractor}' is frame-level and needs a pooling.")
        frames = store.frame_table(extractor, record.version)
        frames = frames[frames["media_id"].isin(ok_ids)]
        vectors: dict[str, np.ndarray] = {}
        for media_id, group in frames.groupby("media_id", sort=False):
            faces = [np.asarray(v, np.float32) for v in group["features"] if v is not None]
            stacked = np.stack(faces) if faces else np.zeros((0, record.dim), np.float32)
            vectors[media_id] = pool(stacked, pooling)
        for media_id in ok_ids - set(vectors):
            vectors[media_id] = pool(np.zeros((0, record.dim), np.float32), pooling)
        name = f"{extractor}.{pooling}"
    else:
        ok = media[media["status"] == STATUS_OK]
        vectors = {
            m: np.asarray(v, np.float32)
            for m, v in zip(ok["media_id"], ok["features"], strict=True)
        }
        name = extractor
    manifest = store.read_manifest().set_index("media_id")
    ids = np.array(sorted(vectors), dtype=object)
    y = np.array([_label_index(manifest, m, labels) for m in ids], dtype=int)
    split = np.array([_text(manifest, m, "split") for m in ids], dtype=object)
    x = np.stack([vectors[m] for m in ids]) if len(ids) else np.zeros((0, record.dim), np.float32)
    return FeatureMatrix(name, record.modality, ids, x.astype(np.float32), y, split)


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
    was fitted on: its feature set, pooled the same way.

    This is the one place that turns a model record back into its input matrix, so prediction
    on new media and refits during a search read features identically.
    """
    feature_set = str(record["spec"]["feature_set"])
    extractor, _, pooling = feature_set.partition(".")
    return load_feature_matrix(store, extractor, pooling or None, labels)
