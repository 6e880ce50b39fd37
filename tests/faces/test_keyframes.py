"""Keyframe detection: keyframe positions, carrying faces across gaps, re-detection where
carrying fails, shot cuts; with a scripted detector for exact cases and RetinaFace on a moving
real photograph for the whole path."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.faces.keyframes import KeyframeSettings, detect_with_keyframes, keyframes
from raypipe.faces.mtcnn import FaceDetections
from raypipe.faces.retinaface import RetinaFaceDetector
from raypipe.faces.shot_cuts import shot_cuts, thumbnails
from raypipe.faces.tracking import iou_matrix
from raypipe.media.face_motion_set import Sprite, _background, _photos, render_frame


def _faces(boxes: list[list[float]], score: float = 0.99) -> FaceDetections:
    boxes_np = np.asarray(boxes, np.float32).reshape(-1, 4)
    centres = np.stack([(boxes_np[:, 0] + boxes_np[:, 2]) / 2, boxes_np[:, 1]], axis=1)
    return FaceDetections(
        boxes_np,
        np.full(len(boxes_np), score, np.float32),
        np.repeat(centres[:, None, :], 5, axis=1),
    )


class ScriptedDetector:
    """Faces given per frame by a table; frame ``i`` is recognised by its pixel value ``i``."""

    def __init__(self, table: dict[int, FaceDetections]) -> None:
        self.table = table
        self.calls: list[int] = []

    def __call__(self, frames: np.ndarray) -> list[FaceDetections]:
        index = [int(f[0, 0, 0]) for f in frames]
        self.calls.extend(index)
        return [self.table[i] for i in index]


def _frames(count: int) -> np.ndarray:
    return np.stack([np.full((8, 8, 3), i, np.uint8) for i in range(count)])


def test_keyframe_positions() -> None:
    no_cut = np.zeros(20, bool)
    assert keyframes(20, 8, no_cut) == [0, 8, 16, 19]
    cuts = no_cut.copy()
    cuts[11] = True
    assert keyframes(20, 8, cuts) == [0, 8, 10, 11, 16, 19]
    assert keyframes(1, 8, np.zeros(1, bool)) == [0]
    assert keyframes(0, 8, np.zeros(0, bool)) == []


def test_linear_motion_is_carried_exactly_with_detection_on_keyframes_only() -> None:
    table = {i: _faces([[10 + i, 20, 50 + i, 60 + 0.5 * i]]) for i in range(17)}
    detect = ScriptedDetector(table)
    settings = KeyframeSettings(interval=8, cut_threshold=255)
    found, counts = detect_with_keyframes(detect, _frames(17), settings)
    assert sorted(detect.calls) == [0, 8, 16]
    assert (counts.detected, counts.carried) == (3, 14)
    for i, faces in enumerate(found):
        np.testing.assert_allclose(faces.boxes, table[i].boxes, atol=1e-4)
        np.testing.assert_allclose(faces.landmarks, table[i].landmarks, atol=1e-4)


def test_a_face_entering_is_found_by_bisection_at_its_first_frame() -> None:
    # A second face appears at frame 5 and stays.
    table = {
        i: _faces([[10, 10, 40, 40]] + ([[100, 10, 130, 40]] if i >= 5 else [])) for i in range(9)
    }
    detect = ScriptedDetector(table)
    found, counts = detect_with_keyframes(
        detect, _frames(9), KeyframeSettings(interval=8, cut_threshold=255)
    )
    assert [len(f) for f in found] == [len(table[i]) for i in range(9)]
    assert 4 in detect.calls and 5 in detect.calls  # bisection narrowed down to the change
    assert counts.detected < 9


def test_low_confidence_and_fast_motion_are_detected_again() -> None:
    unsure = {i: _faces([[10, 10, 40, 40]], score=0.6) for i in range(9)}
    detect = ScriptedDetector(unsure)
    detect_with_keyframes(detect, _frames(9), KeyframeSettings(interval=8, cut_threshold=255))
    assert sorted(detect.calls) == list(range(9))
    # The face jumps by more than its width between keyframes: no IoU match, re-detection.
    jump = {i: _faces([[10 + 12 * i, 10, 40 + 12 * i, 40]]) for i in range(9)}
    detect = ScriptedDetector(jump)
    found, _ = detect_with_keyframes(
        detect, _frames(9), KeyframeSettings(interval=8, cut_threshold=255)
    )
    assert len(detect.calls) > 3
    for i, faces in enumerate(found):
        assert iou_matrix(faces.boxes, jump[i].boxes)[0, 0] >= 0.5


def test_interval_one_detects_every_frame() -> None:
    table = {i: _faces([[10, 10, 40, 40]]) for i in range(5)}
    detect = ScriptedDetector(table)
    _, counts = detect_with_keyframes(detect, _frames(5), KeyframeSettings(interval=1))
    assert sorted(detect.calls) == list(range(5)) and counts.carried == 0


def test_shot_cuts_from_thumbnails() -> None:
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[1] = 10  # a small change: no cut
    frames[2:] = 200  # a new shot
    assert shot_cuts(frames, threshold=30).tolist() == [False, False, True, False]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    grey = image[0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    thumbs = thumbnails(image)
    rows, cols = np.linspace(0, 64, 33).astype(int), np.linspace(0, 96, 33).astype(int)
    assert thumbs[0, 3, 5] == pytest.approx(
        grey[rows[3] : rows[4], cols[5] : cols[6]].mean(), abs=0.01
    )


def test_retinaface_on_a_moving_real_photo_matches_every_frame_detection() -> None:
    detector = RetinaFaceDetector()
    photos, background = _photos(), _background(320, 240)
    sprite = Sprite("obama", lambda t: (60 + 200 * t, 120, 150 + 40 * t, 10 * t))
    frames = np.stack([render_frame([sprite], photos, background, i / 24) for i in range(25)])
    every = detector.detect(frames)
    found, counts = detect_with_keyframes(
        detector.detect, frames, KeyframeSettings(interval=8, detect_batch=8)
    )
    assert counts.detected < len(frames)
    for reference, faces in zip(every, found, strict=True):
        assert len(reference) == 1 and len(faces) == 1
        assert iou_matrix(faces.boxes, reference.boxes)[0, 0] >= 0.7
