"""RetinaFace (MobileNet-0.25) with the real Pytorch_Retinaface weights: priors and decoding
against hand-derived values, detections on real photographs against MTCNN (no mocks).

The weights and photographs come from the weights folder (``python -m raypipe.weights fetch``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raypipe.errors import WeightsError
from raypipe.faces.mtcnn import MTCNNDetector
from raypipe.faces.priors import decode_boxes, decode_landmarks, prior_boxes
from raypipe.faces.retinaface import RetinaFaceDetector, load_retinaface
from raypipe.faces.retinaface_net import RetinaFaceNet
from raypipe.faces.tracking import iou_matrix
from raypipe.weights import weight_file


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


def _photo(name: str) -> np.ndarray:
    return np.array(Image.open(weight_file(f"media/{name}.jpg")).convert("RGB"))


def test_priors_by_hand_for_a_16x24_input() -> None:
    """Level 0 (stride 8): 2x3 cells; level 1 (16): 1x2; level 2 (32): 1x1; two anchors each."""
    priors = prior_boxes(16, 24).numpy()
    assert priors.shape == ((2 * 3 + 1 * 2 + 1 * 1) * 2, 4)
    np.testing.assert_allclose(priors[0], [4 / 24, 4 / 16, 16 / 24, 16 / 16])  # cell (0, 0)
    np.testing.assert_allclose(priors[1], [4 / 24, 4 / 16, 32 / 24, 32 / 16])  # second anchor
    np.testing.assert_allclose(priors[2], [12 / 24, 4 / 16, 16 / 24, 1.0])  # cell (0, 1)
    np.testing.assert_allclose(priors[6], [4 / 24, 12 / 16, 16 / 24, 1.0])  # cell (1, 0)
    np.testing.assert_allclose(priors[12], [8 / 24, 8 / 16, 64 / 24, 64 / 16])  # level 1
    np.testing.assert_allclose(priors[14], [24 / 24, 8 / 16, 64 / 24, 64 / 16])
    np.testing.assert_allclose(priors[17], [16 / 24, 16 / 16, 512 / 24, 512 / 16])  # level 2


def test_decoding_by_hand() -> None:
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    np.testing.assert_allclose(
        decode_boxes(torch.zeros(1, 4), prior).numpy(), [[0.4, 0.3, 0.6, 0.7]], atol=1e-6
    )
    # Centre moves by offset * 0.1 * prior size; width doubles with log(2) / 0.2.
    offsets = torch.tensor([[1.0, -1.0, math.log(2) / 0.2, 0.0]])
    np.testing.assert_allclose(
        decode_boxes(offsets, prior).numpy(), [[0.32, 0.26, 0.72, 0.66]], atol=1e-6
    )
    marks = decode_landmarks(torch.ones(1, 10), prior).numpy()
    assert marks.shape == (1, 5, 2)
    np.testing.assert_allclose(marks[0], np.tile([0.52, 0.54], (5, 1)), atol=1e-6)


@pytest.mark.parametrize("size", [(16, 24), (37, 53), (240, 320)])
def test_network_rows_match_the_priors(size: tuple[int, int]) -> None:
    net = RetinaFaceNet().eval()
    with torch.inference_mode():
        scores, boxes, marks = net(torch.zeros(2, 3, *size))
    count = prior_boxes(*size).shape[0]
    assert scores.shape == (2, count) and boxes.shape == (2, count, 4)
    assert marks.shape == (2, count, 10)
    assert ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("name", ["obama", "trump"])
def test_real_photographs_faces_where_mtcnn_finds_them(detector, name: str) -> None:
    image = _photo(name)
    found = detector.detect(image[None])[0]
    reference = MTCNNDetector().detect(image[None])[0]
    assert len(reference) == 1 and len(found) == 1
    assert found.scores[0] > 0.9
    assert iou_matrix(found.boxes, reference.boxes)[0, 0] >= 0.5
    x1, y1, x2, y2 = found.boxes[0]
    marks = found.landmarks[0]
    assert ((marks[:, 0] > x1) & (marks[:, 0] < x2) & (marks[:, 1] > y1) & (marks[:, 1] < y2)).all()
    left_eye, right_eye, nose, mouth_left, mouth_right = marks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    # Landmarks agree with MTCNN's to a tenth of the face's size.
    assert np.abs(marks - reference.landmarks[0]).max() < 0.1 * (x2 - x1)


def test_batch_equals_single_frames_and_no_face_is_empty(detector) -> None:
    size = (256, 224)
    obama = np.array(Image.fromarray(_photo("obama")).resize(size))
    trump = np.array(Image.fromarray(_photo("trump")).resize(size))
    blank = np.full_like(obama, 128)
    batch = detector.detect(np.stack([obama, blank, trump]))
    assert [len(f) for f in batch] == [1, 0, 1]
    assert batch[1].boxes.shape == (0, 4) and batch[1].landmarks.shape == (0, 5, 2)
    for single, together in zip((obama, trump), (batch[0], batch[2]), strict=True):
        alone = detector.detect(single[None])[0]
        np.testing.assert_allclose(alone.boxes, together.boxes, atol=1e-2)
    # A min_face_size above the face's size drops it.
    assert len(RetinaFaceDetector(min_face_size=300).detect(obama[None])[0]) == 0


def test_invalid_frames_raise(detector) -> None:
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        detector.detect(np.zeros((32, 32, 3), np.uint8))
    assert detector.detect(np.zeros((0, 32, 32, 3), np.uint8)) == []


def test_corrupt_or_foreign_weights_raise_weights_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="Cannot read RetinaFace weights"):
        load_retinaface(garbage)
    foreign = tmp_path / "foreign.pth"
    torch.save({"layer.weight": torch.zeros(2)}, foreign)
    with pytest.raises(WeightsError, match="do not match the network"):
        load_retinaface(foreign)


def test_weights_digest_is_short_and_stable(detector) -> None:
    assert len(detector.weights_digest) == 12
    assert detector.weights_digest == RetinaFaceDetector().weights_digest
