"""The frames demo set through raypipe's real extraction (MTCNN + the FER CNN on frames sampled
at 5 Hz): the face is found where the video shows one and not where it does not, and a
per-frame logistic regression on the stored features tells the planted expressions apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from raypipe.config import ExtractConfig
from raypipe.media.datasets.abaw import frame_indices, labels_at_times, read_annotation
from raypipe.media.frames_demo_set import make_frames_demo_dataset
from raypipe.metrics import expression_macro_f1
from raypipe.pipeline.extract import run_extract
from raypipe.store.feature_store import FeatureStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FPS = 25.0
OFF = ["opensmile", "opensmile_lld", "vad", "whisper_transcript", "whisper_embedding"]


def test_extraction_finds_the_faces_and_their_features_carry_the_expression(
    ray_local: None, tmp_path: Path
) -> None:
    manifest = make_frames_demo_dataset(tmp_path / "data", videos=12, seed=5, duration_s=5.0)
    store = str(tmp_path / "store")
    sections = {name: {"enabled": False} for name in [*OFF, "text_embedding"]}
    run_extract(
        ExtractConfig.model_validate(
            {"manifest": manifest, "out": store, "video": {"fps": 5.0}, **sections}
        )
    )
    frames = FeatureStore(store).frame_table("face_expression")
    table = pd.read_csv(manifest)
    segments = pd.read_csv(manifest.parent / "segments.csv", keep_default_na=False)
    features, labels, splits = [], [], []
    found, shown = [], []
    for row in table.itertuples():
        rows = frames[frames["media_id"] == row.media_id].sort_values("timestamp_s")
        times = rows["timestamp_s"].to_numpy()
        assert len(rows) == 25  # 5 s at 5 Hz
        face = np.ones(round(5.0 * FPS), bool)
        empty = segments[(segments["media_id"] == row.media_id) & (segments["kind"] == "no_face")]
        for stretch in empty.itertuples():
            face[stretch.start_frame : stretch.stop_frame] = False
        visible = face[frame_indices(times, FPS)]
        has_face = rows["has_face"].to_numpy()
        found.append(has_face[visible])
        shown.append(has_face[~visible])
        expr = labels_at_times(read_annotation(row.expr, "expr"), times, FPS)
        keep = has_face & expr.mask
        features.append(np.stack(rows["features"].to_numpy()[keep]))
        labels.append(expr.values[keep])
        splits += [row.split] * int(keep.sum())
    assert np.concatenate(found).mean() >= 0.9  # faces found where the video shows one
    no_face = np.concatenate(shown)
    assert len(no_face) > 0 and no_face.mean() <= 0.1  # and not in the empty stretches
    x, y, split = np.concatenate(features), np.concatenate(labels), np.asarray(splits)
    train = split == "train"
    held_out = ~train
    scaler = StandardScaler().fit(x[train])
    model = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(x[train]), y[train])
    predicted = model.predict(scaler.transform(x[held_out]))
    # 8 classes: chance is about 0.125; single frames carry the planted expression.
    assert expression_macro_f1(y[held_out], predicted) > 0.3
