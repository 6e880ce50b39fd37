"""MTCNN with the real facenet-pytorch weights on real images and a real video (no mocks).

The weights and the video come from the weights folder (``python -m raypipe.weights fetch``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from raypipe.errors import WeightsError
from raypipe.faces import mtcnn
from raypipe.faces.mtcnn import FaceDetections, MTCNNDetector, PNet, RNet, load_net
from raypipe.weights import weight_file

skimage_data = pytest.importorskip("skimage.data")

#: Eileen Collins' face in skimage's astronaut (512x512), checked by drawing the detections:
#: the box is about x 179-269, y 60-173; this is a generous region around it.
FACE_X = (165.0, 285.0)
FACE_Y = (45.0, 190.0)


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def _assert_empty(found: FaceDetections) -> None:
    assert isinstance(found, FaceDetections)
    assert len(found) == 0
    assert found.boxes.shape == (0, 4) and found.boxes.dtype == np.float32
    assert found.scores.shape == (0,) and found.scores.dtype == np.float32
    assert found.landmarks.shape == (0, 5, 2) and found.landmarks.dtype == np.float32


def test_astronaut_one_face_with_plausible_landmarks(detector, astronaut):
    (found,) = detector.detect(astronaut[None])
    assert len(found) == 1
    assert found.boxes.shape == (1, 4) and found.boxes.dtype == np.float32
    assert found.landmarks.shape == (1, 5, 2) and found.landmarks.dtype == np.float32
    assert found.scores[0] > 0.95

    x1, y1, x2, y2 = found.boxes[0]
    assert FACE_X[0] <= x1 < x2 <= FACE_X[1]
    assert FACE_Y[0] <= y1 < y2 <= FACE_Y[1]
    assert 60 <= x2 - x1 <= 120 and 60 <= y2 - y1 <= 140

    points = found.landmarks[0]
    assert np.all((points[:, 0] > x1) & (points[:, 0] < x2))
    assert np.all((points[:, 1] > y1) & (points[:, 1] < y2))
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0]
    assert mouth_left[0] < mouth_right[0]
    assert left_eye[0] < nose[0] < right_eye[0]
    eyes_y = max(left_eye[1], right_eye[1])
    assert eyes_y < nose[1] < min(mouth_left[1], mouth_right[1])


def test_no_face_gives_typed_empty_result(detector):
    coffee = skimage_data.coffee()
    grey = np.full_like(coffee, 128)
    found = detector.detect(np.stack([coffee, grey]))
    assert len(found) == 2
    for item in found:
        _assert_empty(item)


def test_empty_and_invalid_batches(detector, astronaut):
    assert detector.detect(np.zeros((0, 64, 64, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="B, H, W, 3"):
        detector.detect(astronaut)
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(astronaut[None].astype(np.float32))
    # Smaller than the smallest face searched for: no pyramid scale, no faces.
    _assert_empty(detector.detect(astronaut[None, :10, :10])[0])


def test_batch_matches_single_frames_and_mirror(detector, astronaut):
    width = astronaut.shape[1]
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    grey = np.full_like(astronaut, 128)
    single = detector.detect(astronaut[None])[0]
    batch = detector.detect(np.stack([astronaut, flipped, grey]))
    assert len(batch) == 3

    np.testing.assert_allclose(batch[0].boxes, single.boxes, atol=1.0)
    np.testing.assert_allclose(batch[0].landmarks, single.landmarks, atol=1.0)
    np.testing.assert_allclose(batch[0].scores, single.scores, atol=1e-4)
    np.testing.assert_allclose(batch[1].boxes, detector.detect(flipped[None])[0].boxes, atol=1.0)
    _assert_empty(batch[2])

    # The detector is not exactly mirror-symmetric (pyramid grid, learned filters), so the
    # mirrored box agrees to a few pixels, not exactly.
    assert len(batch[1]) == 1
    mirrored = batch[1].boxes[0].copy()
    mirrored[[0, 2]] = width - mirrored[[2, 0]]
    assert _iou(mirrored, single.boxes[0]) > 0.8
    np.testing.assert_allclose(mirrored, single.boxes[0], atol=10.0)
    # Left/right landmarks swap under mirroring.
    points = batch[1].landmarks[0][[1, 0, 2, 4, 3]].copy()
    points[:, 0] = width - points[:, 0]
    np.testing.assert_allclose(points, single.landmarks[0], atol=4.0)


def test_sample_video_faces_in_most_frames(detector):
    av = pytest.importorskip("av")
    path = weight_file("media/carphone_pristine.mp4")
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 10:
                break
    batch = np.stack(frames)
    assert batch.shape[0] == 10 and batch.dtype == np.uint8
    found = detector.detect(batch)
    with_face = [f for f in found if len(f) > 0 and f.scores.max() > 0.9]
    assert len(with_face) >= 9
    height, width = batch.shape[1:3]
    for item in with_face:
        best = item.boxes[int(np.argmax(item.scores))]
        assert best[2] - best[0] > 20 and best[3] - best[1] > 20
        assert best[0] >= -5 and best[2] <= width + 5 and best[1] >= -5 and best[3] <= height + 5


@pytest.fixture(scope="module")
def original_mtcnn(tmp_path_factory: pytest.TempPathFactory):
    """facenet-pytorch's own MTCNN (the implementation the weights were converted for), run
    from the pinned wheel raypipe takes the weights out of: downloaded from PyPI with pip as
    ``python -m raypipe.weights fetch`` does, checked against its pinned SHA-256, unpacked into
    a temporary folder and imported from there (facenet-pytorch is not installed)."""
    import sys

    from raypipe.weights import CARRIERS, _download, _verified_wheel

    carrier = next(c for c in CARRIERS if c.requirement.startswith("facenet-pytorch=="))
    folder = tmp_path_factory.mktemp("facenet")
    try:
        wheel = _download(carrier, folder)
    except WeightsError as exc:  # the suite installs from PyPI; without it this is a failure
        pytest.fail(
            f"the original MTCNN runs from its pinned wheel, which PyPI did not give: {exc}"
        )
    with _verified_wheel(carrier, wheel) as archive:
        code = [n for n in archive.namelist() if n.startswith("facenet_pytorch/")]
        archive.extractall(folder / "unpacked", members=code)
    sys.path.insert(0, str(folder / "unpacked"))
    try:
        from facenet_pytorch import MTCNN

        yield MTCNN(keep_all=True, device="cpu")
    finally:
        sys.path.remove(str(folder / "unpacked"))
        for name in [m for m in sys.modules if m.split(".")[0] == "facenet_pytorch"]:
            del sys.modules[name]


def test_port_matches_the_original_mtcnn(detector, original_mtcnn, astronaut):
    """Boxes, landmarks and scores of the port equal facenet-pytorch's on faces inside the
    frame. The port's boxes are 0-based edges, the original's 1-based: x1 and y1 differ by
    exactly one pixel by convention."""
    av = pytest.importorskip("av")
    with av.open(str(weight_file("media/carphone_pristine.mp4"))) as container:
        video = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:81:40]
    images = [astronaut, *video, np.concatenate(video[:2], axis=1)]  # the last has two faces
    for image in images:
        boxes, scores, points = original_mtcnn.detect(image, landmarks=True)
        expected = np.asarray(boxes.tolist(), np.float32) - np.float32([1, 1, 0, 0])
        (found,) = detector.detect(image[None])
        assert len(found) == len(expected) >= 1
        order, mine = np.argsort(expected[:, 0]), np.argsort(found.boxes[:, 0])
        np.testing.assert_allclose(found.boxes[mine], expected[order], atol=0.05)
        np.testing.assert_allclose(
            found.landmarks[mine], np.asarray(points.tolist())[order], atol=0.05
        )
        np.testing.assert_allclose(
            found.scores[mine], np.asarray(scores.tolist())[order], atol=1e-4
        )


def test_weights_digest_is_short_and_stable(detector):
    digest = detector.weights_digest
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert digest == MTCNNDetector(min_face_size=40).weights_digest


def test_missing_weights_name_the_file_and_the_fetch_command(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("RAYPIPE_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(WeightsError, match="is missing") as caught:
        MTCNNDetector()
    message = str(caught.value)
    assert "`python -m raypipe.weights fetch`" in message
    assert f"'{tmp_path / 'empty' / 'mtcnn' / 'pnet.pt'}' is missing" in message
    assert "facenet-pytorch==2.6.0" in message and "RAYPIPE_WEIGHTS" in message


def test_weights_folder_from_the_environment_and_a_damaged_file_named(
    detector, monkeypatch, tmp_path: Path
):
    """A copy of the weights under $RAYPIPE_WEIGHTS loads (same digest); one changed byte in
    onet.pt is found by its SHA-256 before torch reads the file."""
    for target in mtcnn.WEIGHT_FILES.values():
        copy = tmp_path / target
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(weight_file(target).read_bytes())
    monkeypatch.setenv("RAYPIPE_WEIGHTS", str(tmp_path))
    assert MTCNNDetector().weights_digest == detector.weights_digest
    onet = tmp_path / "mtcnn" / "onet.pt"
    data = bytearray(onet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onet.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="not the pinned") as caught:
        MTCNNDetector()
    assert f"'{onet}' has SHA-256" in str(caught.value)
    assert "python -m raypipe.weights fetch" in str(caught.value)


def test_wrong_or_corrupt_weights_raise_weights_error(tmp_path: Path):
    pnet_path = weight_file("mtcnn/pnet.pt")
    with pytest.raises(WeightsError, match=r"do not match the network \(RNet\)"):
        load_net(RNet(), pnet_path)
    broken = tmp_path / "pnet.pt"
    broken.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="Cannot read"):
        load_net(PNet(), broken)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="not a state dict"):
        load_net(PNet(), tmp_path / "list.pt")
