"""A tiny GAF-shaped feature store of group photos, written through raypipe's own writing API
(FeatureStore.write_results): per image one whole-frame 'scene' row and one 'faces' row per
detected face (face_index, score), labelled Positive / Neutral / Negative in the manifest.

The class is planted in the faces: each image has 0 to 4 faces; an expressive face carries its
image's class strongly, a bystander (feature 3 raised) carries noise only. The scene carries the
class weakly, so an image without faces is still guessed better than chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raypipe.labels import GAF3
from raypipe.store.feature_store import ExtractorRecord, FeatureStore, MediaResult
from raypipe.store.schema import FACE_FRAME_SCHEMA, FRAME_SCHEMA

SCENE_DIM, FACE_DIM = 4, 6
#: Images per split.
SIZES = {"train": 60, "val": 30, "test": 30}


def group_faces(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(F, FACE_DIM) face features of one image of class ``label`` and each face's detector
    score; F in 0..4, about a third of the faces bystanders."""
    count = int(rng.integers(0, 5))
    faces = rng.normal(0, 0.4, (count, FACE_DIM)).astype(np.float32)
    bystander = rng.random(count) < 0.35
    faces[~bystander, label] += 1.5
    faces[bystander, 3] += 2.0
    return faces, rng.uniform(0.8, 1.0, count).astype(np.float32)


def write_group_store(root: Path, seed: int = 0) -> str:
    """A store (extractors 'scene' and 'faces', v1, frame level) of labelled group images
    ``<split>/<Class>/img<k>`` under ``root``; returns its URI."""
    rng = np.random.default_rng(seed)
    store = FeatureStore(str(root / "store"))
    store.initialise()
    store.register_extractors(
        [
            ExtractorRecord("scene", "v1", "frame", SCENE_DIM, "visual", {}),
            ExtractorRecord("faces", "v1", "frame", FACE_DIM, "visual", {}),
        ]
    )
    manifest, results = [], []
    for split, size in SIZES.items():
        for k in range(size):
            label = k % 3
            media = f"{split}/{GAF3[label]}/img{k}"
            scene = rng.normal(0, 1.0, SCENE_DIM).astype(np.float32)
            scene[label] += 0.7
            scene_rows = pa.Table.from_pydict(
                {
                    "media_id": [media],
                    "frame_index": [0],
                    "timestamp_s": [0.0],
                    "has_face": [False],
                    "face_score": [None],
                    "box": [None],
                    "features": [scene.tolist()],
                },
                schema=FRAME_SCHEMA,
            )
            results.append(MediaResult("scene", "v1", media, {"status": "ok"}, scene_rows))
            faces, scores = group_faces(label, rng)
            n = max(len(faces), 1)  # an image without faces keeps one no-face row
            found = len(faces) > 0
            face_rows = pa.Table.from_pydict(
                {
                    "media_id": [media] * n,
                    "frame_index": [0] * n,
                    "timestamp_s": [0.0] * n,
                    "has_face": [found] * n,
                    "face_score": scores.tolist() if found else [None],
                    "box": [[0.0, 0.0, 10.0, 10.0]] * n if found else [None],
                    "features": [f.tolist() for f in faces] if found else [None],
                    "face_index": list(range(len(faces))) if found else [None],
                    "track_id": list(range(len(faces))) if found else [None],
                    "main_track": [None] * n,
                    "landmarks": [None] * n,
                },
                schema=FACE_FRAME_SCHEMA,
            )
            row = {"status": "ok", "frames": 1, "face_frames": int(found)}
            results.append(MediaResult("faces", "v1", media, row, face_rows))
            manifest.append({"media_id": media, "path": "", "label": GAF3[label], "split": split})
    store.write_results(results)
    store.write_manifest(pd.DataFrame(manifest))
    return store.uri
