"""A tiny Aff-Wild2-shaped feature store and annotation folder, written through raypipe's own
writing APIs (FeatureStore.write_results, abaw.write_annotation): frame rows of one visual
extractor with timestamps, some frames without a face, per-frame EXPR/AU/VA labels at a
native 25 fps with unlabelled stretches, and openSMILE-LLD-like audio spans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raypipe.labels import ABAW_AU12, ABAW_EXPR8
from raypipe.media.datasets.abaw import FrameLabels, write_annotation
from raypipe.store.feature_store import ExtractorRecord, FeatureStore, MediaResult
from raypipe.store.schema import FRAME_SCHEMA, SPAN_SCHEMA

#: Native frame rate of the videos (Hz) and sampling rate of the stored frames (Hz).
NATIVE_FPS, SAMPLE_FPS = 25.0, 5.0
#: Media ids by split.
SPLITS = {"train": ["t0", "t1", "t2", "t3"], "val": ["v0", "v1"], "test": ["x0"]}
DIM = 8


def planted(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Features that carry the class (first 4 dims) and noise."""
    out = rng.normal(0, 0.3, (len(classes), DIM)).astype(np.float32)
    out[np.arange(len(classes)), classes % 4] += 2.0
    return out


def write_tiny_frames(root: Path, sampled: int = 40, seed: int = 0) -> tuple[str, Path]:
    """A store (extractor 'vis' v1, frame level; 'lld' v1 spans) and an ABAW annotation folder
    under ``root``. Each media has ``sampled`` frames at 5 fps (every 5th native frame);
    frames 3 and 4 have no face; expression follows segments of 10 sampled frames over
    classes 0..3; AU1 is on for classes 1 and 3, AU2 for class 2; valence = class/4 - 0.4;
    the first 5 native frames of each video are unlabelled for every task.
    """
    rng = np.random.default_rng(seed)
    store = FeatureStore(str(root / "store"))
    store.initialise()
    store.register_extractors(
        [
            ExtractorRecord("vis", "v1", "frame", DIM, "visual", {}),
            ExtractorRecord("lld", "v1", "frame", 2, "audio", {}),
        ]
    )
    manifest, results = [], []
    annotations = root / "annotations"
    for split, ids in SPLITS.items():
        for number, media in enumerate(ids):
            offset = number + (0 if split == "train" else 1)
            native = sampled * 5
            native_class = ((np.arange(native) // 50) + offset) % 4
            sample_class = native_class[::5][:sampled]
            features = planted(sample_class, rng)
            has_face = np.ones(sampled, bool)
            has_face[[3, 4]] = False
            vectors = [f.tolist() if h else None for f, h in zip(features, has_face, strict=True)]
            frames = pa.Table.from_pydict(
                {
                    "media_id": [media] * sampled,
                    "frame_index": list(range(sampled)),
                    "timestamp_s": [i / SAMPLE_FPS for i in range(sampled)],
                    "has_face": has_face.tolist(),
                    "face_score": [0.9 if h else None for h in has_face],
                    "box": [[0.0, 0.0, 10.0, 10.0] if h else None for h in has_face],
                    "features": vectors,
                },
                schema=FRAME_SCHEMA,
            )
            row = {"status": "ok", "frames": sampled, "face_frames": int(has_face.sum())}
            results.append(MediaResult("vis", "v1", media, row, frames))
            # Audio: 10 ms spans whose value is the class of the native frame at that time.
            starts = np.arange(0, sampled / SAMPLE_FPS, 0.01)
            spans = pa.Table.from_pydict(
                {
                    "media_id": [media] * len(starts),
                    "frame_index": list(range(len(starts))),
                    "timestamp_s": starts.tolist(),
                    "end_s": (starts + 0.025).tolist(),
                    "kind": ["lld"] * len(starts),
                    "features": [
                        [float(native_class[min(int(s * NATIVE_FPS), native - 1)]), 1.0]
                        for s in starts
                    ],
                },
                schema=SPAN_SCHEMA,
            )
            results.append(MediaResult("lld", "v1", media, {"status": "ok"}, spans))
            manifest.append({"media_id": media, "path": "", "label": None, "split": split})
            if split == "test":
                continue  # test videos have no labels, as in the challenge
            expr = native_class.copy()
            expr[:5] = -1
            au = np.zeros((native, 12), np.int64)
            au[:, 0] = np.isin(native_class, (1, 3))
            au[:, 1] = native_class == 2
            au[:5] = -1
            va = np.stack([native_class / 4 - 0.4, np.full(native, 0.1)], axis=1)
            va[:5] = -5
            folder = {"train": "Train_Set", "val": "Validation_Set"}[split]
            write_annotation(
                annotations / "EXPR_Set" / folder / f"{media}.txt",
                FrameLabels.from_values("expr", expr, names=ABAW_EXPR8),
            )
            write_annotation(
                annotations / "AU_Set" / folder / f"{media}.txt",
                FrameLabels.from_values("au", au, names=ABAW_AU12),
            )
            write_annotation(
                annotations / "VA_Set" / folder / f"{media}.txt",
                FrameLabels.from_values("va", va),
            )
    store.write_results(results)
    store.write_manifest(pd.DataFrame(manifest))
    return store.uri, annotations
