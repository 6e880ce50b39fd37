"""Face crops: shape, dtype, centring, zero padding at the frame's edges, largest face choice."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.faces.crop import crop_face, largest_face_index
from raypipe.faces.mtcnn import FaceDetections, MTCNNDetector

skimage_data = pytest.importorskip("skimage.data")


def _detections(boxes: list[list[float]]) -> FaceDetections:
    n = len(boxes)
    return FaceDetections(
        boxes=np.asarray(boxes, np.float32).reshape(n, 4),
        scores=np.linspace(0.99, 0.9, n).astype(np.float32),
        landmarks=np.zeros((n, 5, 2), np.float32),
    )


def test_largest_face_index():
    assert largest_face_index(FaceDetections.empty()) is None
    found = _detections([[0, 0, 10, 10], [50, 50, 90, 80], [5, 5, 30, 30]])
    assert largest_face_index(found) == 1
    assert largest_face_index(_detections([[3, 3, 4, 9]])) == 0


def test_crop_shape_dtype_and_content():
    frame = np.zeros((100, 120, 3), np.uint8)
    frame[40:60, 50:70] = (200, 100, 50)
    crop = crop_face(frame, np.array([50, 40, 70, 60], np.float32), size=32, margin=0.0)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    # A tight crop of a uniform patch is that colour everywhere (up to resampling at edges).
    np.testing.assert_allclose(crop[2:-2, 2:-2].reshape(-1, 3).mean(0), (200, 100, 50), atol=2)


def test_crop_is_centred_with_margin():
    frame = np.zeros((200, 200, 3), np.uint8)
    frame[90:110, 90:110] = 255  # the "face", 20 px
    crop = crop_face(frame, np.array([90, 90, 110, 110]), size=40, margin=1.0)
    # side = 40 px, so no resampling: the face occupies the middle 20x20.
    assert crop.shape == (40, 40, 3)
    assert np.all(crop[10:30, 10:30] == 255)
    assert crop.sum() == 20 * 20 * 3 * 255


def test_crop_pads_with_zeros_at_the_border():
    frame = np.full((100, 100, 3), 255, np.uint8)
    crop = crop_face(frame, np.array([-10, -10, 30, 30]), size=40, margin=0.0)
    # Box 40x40 starting at (-10, -10): the first 10 rows and columns are outside the frame.
    assert crop.shape == (40, 40, 3)
    assert np.all(crop[:10] == 0) and np.all(crop[:, :10] == 0)
    assert np.all(crop[10:, 10:] == 255)
    corner = crop_face(frame, np.array([80, 80, 100, 100]), size=64, margin=1.0)
    assert corner.shape == (64, 64, 3)
    assert corner[:44, :44].min() == 255 and corner[-14:, -14:].max() == 0
    outside = crop_face(frame, np.array([300, 300, 340, 340]), size=16)
    assert outside.shape == (16, 16, 3) and outside.max() == 0


def test_crop_rejects_bad_arguments():
    frame = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="x2 > x1"):
        crop_face(frame, np.array([10, 10, 10, 20]), size=8)
    with pytest.raises(ValueError, match="four finite"):
        crop_face(frame, np.array([10, 10, np.nan, 20]), size=8)
    with pytest.raises(ValueError, match="uint8"):
        crop_face(frame.astype(np.float32), np.array([1, 1, 9, 9]), size=8)
    with pytest.raises(ValueError, match="size"):
        crop_face(frame, np.array([1, 1, 9, 9]), size=0)


def test_astronaut_face_crop_is_mostly_face():
    image = skimage_data.astronaut()
    found = MTCNNDetector().detect(image[None])[0]
    best = largest_face_index(found)
    assert best is not None
    crop = crop_face(image, found.boxes[best], size=96)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    nonzero = (crop.max(axis=2) > 0).mean()
    assert nonzero > 0.95
    # Skin tones: red dominates blue in the centre of the face.
    centre = crop[32:64, 32:64].reshape(-1, 3).astype(float).mean(0)
    assert centre[0] > centre[2] + 20
