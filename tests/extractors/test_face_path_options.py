"""The face path options of face extractors (detector, keyframe interval): versions, rows on a
real video, config errors; and the recall measure of the per-core visual benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.config import ExtractConfig, load_config
from raypipe.errors import ConfigError
from raypipe.extractors.process import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.faces.analysis import shared_detector
from raypipe.faces.mtcnn import FaceDetections
from raypipe.media.context import MediaContext
from raypipe.pipeline.face_paths import face_recall
from raypipe.store.feature_store import FeatureStore
from raypipe.weights import weight_file

CARPHONE = weight_file("media/carphone_pristine.mp4")
FAST = {"detector": "retinaface", "keyframe_interval": 8}


def test_defaults_keep_the_version_and_new_options_make_a_new_one() -> None:
    default = build_extractor("face_expression")
    assert "detector" not in default.face_config()
    fast = build_extractor("face_expression", FAST)
    assert fast.face_config()["detector"] == "retinaface"
    assert fast.face_config()["keyframe_interval"] == 8
    assert fast.version != default.version
    mtcnn_keyframes = build_extractor("face_expression", {"keyframe_interval": 4})
    assert mtcnn_keyframes.version not in (default.version, fast.version)
    assert shared_detector(20, "cpu") is shared_detector(20, "cpu", "mtcnn")


def test_unknown_detector_or_interval_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="detector"):
        load_config(ExtractConfig, None, ["face_expression.detector=yolo"], {})
    with pytest.raises(ConfigError, match="keyframe_interval"):
        load_config(ExtractConfig, None, ["face_tracks.keyframe_interval=0"], {})


def test_retinaface_on_keyframes_finds_the_faces_every_frame_mtcnn_finds(tmp_path: Path) -> None:
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    base = build_extractor("face_tracks")
    fast = build_extractor("face_tracks", FAST)
    for extractor in (base, fast):  # one pass each: a pass keeps one state per extractor name
        media = MediaContext("carphone", CARPHONE, fps=5, window_frames=32)
        assert [o.status for o in process_media(media, [extractor], store)] == ["ok"]
    rows = {e: store.media_table("face_tracks", e.version).iloc[0] for e in (base, fast)}
    count = int(rows[base]["frames"])
    assert rows[fast]["frames"] == count and count >= 15
    assert rows[fast]["face_frames"] >= rows[base]["face_frames"] - 1
    tables = [store.frame_table("face_tracks", e.version) for e in (base, fast)]
    indices = sorted(set(tables[0]["frame_index"]))  # video frame numbers of the sampled frames
    assert len(indices) == count
    per_frame = []
    for table in tables:
        table = table[table["has_face"]]
        faces = []
        for index in indices:
            boxes = np.asarray(table[table["frame_index"] == index]["box"].tolist(), np.float32)
            boxes = boxes.reshape(-1, 4)
            faces.append(
                FaceDetections(boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2)))
            )
        per_frame.append(faces)
    recall = face_recall(per_frame[0], per_frame[1])
    assert recall["baseline_face_frames"] >= count - 2 and recall["frame_recall"] >= 0.95


def test_face_recall_by_hand() -> None:
    def faces(*boxes: list[float]) -> FaceDetections:
        array = np.asarray(boxes, np.float32).reshape(-1, 4)
        return FaceDetections(array, np.ones(len(array), np.float32), np.zeros((len(array), 5, 2)))

    baseline = [faces([0, 0, 10, 10], [20, 0, 24, 4]), faces(), faces([0, 0, 10, 10])]
    other = [faces([1, 0, 11, 10]), faces([0, 0, 5, 5]), faces([5, 5, 15, 15])]
    result = face_recall(baseline, other)
    # Frame 0: the largest face is overlapped (IoU 0.82), the small one is not; frame 1 has no
    # baseline face; frame 2: IoU 25 / 175 < 0.5.
    assert result["baseline_face_frames"] == 2 and result["frame_recall"] == 0.5
    assert result["baseline_faces"] == 3 and result["face_recall"] == pytest.approx(1 / 3)
    assert face_recall([faces()], [faces()])["frame_recall"] == 1.0
