"""Synthetic feature stores and matrices whose right answers are known by construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raypipe.classify.feature_matrix import FeatureMatrix
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from raypipe.store.schema import FRAME_SCHEMA, STATUS_OK

CLASSES = ("Angry", "Happy", "Sad")
SPLITS = ("train",) * 6 + ("val",) * 3 + ("test",) * 3


def synthetic_matrix(
    n_per_class: int = 24, dim: int = 6, separation: float = 3.0, seed: int = 0
) -> FeatureMatrix:
    """Three classes: feature c of class c is shifted by ``separation`` (unit noise
    everywhere), so each class is linearly separable from the others; splits cycle train x6,
    val x3, test x3 within each class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = rng.normal(size=(len(y), dim)).astype(np.float32)
    x[np.arange(len(y)), y] += separation
    split = np.array([SPLITS[i % len(SPLITS)] for i in range(len(y))], dtype=object)
    ids = np.array([f"m{i:03d}" for i in range(len(y))], dtype=object)
    return FeatureMatrix("synthetic", "visual", ids, x, y, split)


def make_store(
    root: Path, n_per_class: int = 12, frames: int = 8, seed: int = 0, all_frames: bool = False
) -> tuple[FeatureStore, pd.DataFrame]:
    """A feature store of 3 classes with three extractors:

    - ``face_sim`` (visual, frame level, 4-d): frame vectors around a class centre;
    - ``voice_sim`` (audio, 5-d) and ``words_sim`` (text, 3-d): media level, one vector per
      media whose first value tracks the class (noisily); with ``all_frames`` they are frame
      level too (``frames`` noisy copies of that vector).

    Returns the store and a targets table (media_id; au1, au2: 0/1 labels equal to
    "class is Happy" and "class is not Angry"; valence = class - 1 exactly).
    """
    rng = np.random.default_rng(seed)
    store = FeatureStore(str(root))
    store.initialise()
    ids = [f"clip{i:03d}" for i in range(3 * n_per_class)]
    y = np.repeat(np.arange(3), n_per_class)
    split = [SPLITS[i % len(SPLITS)] for i in range(len(ids))]
    store.write_manifest(
        pd.DataFrame(
            {
                "media_id": ids,
                "path": [f"/nowhere/{m}.mp4" for m in ids],
                "label": [CLASSES[c] for c in y],
                "split": split,
            }
        )
    )
    level = "frame" if all_frames else "media"
    records = [
        ExtractorRecord("face_sim", "v1", "frame", 4, "visual", {}),
        ExtractorRecord("voice_sim", "v1", level, 5, "audio", {}),
        ExtractorRecord("words_sim", "v1", level, 3, "text", {}),
    ]
    store.register_extractors(records)
    for media_id, cls in zip(ids, y, strict=True):
        centre = np.zeros(4, np.float32)
        centre[cls % 4] = 2.0
        vectors = centre + 0.7 * rng.normal(size=(frames, 4)).astype(np.float32)
        store.write_result(
            "face_sim", "v1", media_id, {"status": STATUS_OK}, _frame_rows(media_id, vectors)
        )
        for name, dim, noise in (("voice_sim", 5, 1.0), ("words_sim", 3, 1.5)):
            features = noise * rng.normal(size=dim)
            features[0] += 1.5 * cls
            if all_frames:
                copies = features + 0.3 * rng.normal(size=(frames, dim))
                rows = _frame_rows(media_id, copies.astype(np.float32))
                store.write_result(name, "v1", media_id, {"status": STATUS_OK}, rows)
            else:
                row = {"status": STATUS_OK, "features": features.astype(np.float32).tolist()}
                store.write_result(name, "v1", media_id, row)
    targets = pd.DataFrame(
        {
            "media_id": ids,
            "au1": (y == 1).astype(float),
            "au2": (y != 0).astype(float),
            "valence": y - 1.0,
        }
    )
    return store, targets


def _frame_rows(media_id: str, vectors: np.ndarray) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "media_id": media_id,
                "frame_index": i,
                "timestamp_s": i / 2.0,
                "has_face": True,
                "features": vector.tolist(),
            }
            for i, vector in enumerate(vectors)
        ],
        schema=FRAME_SCHEMA,
    )
