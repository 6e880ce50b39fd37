"""Five-point alignment and face tracking, on synthetic points and real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.faces.align import align_faces, similarity_transform, template
from raypipe.faces.analysis import shared_detector
from raypipe.faces.tracking import FaceTracker, iou_matrix
from raypipe.weights import weight_file


def test_similarity_transform_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ (scale * rotation).T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("size", [48, 64, 112, 224])
def test_aligned_crop_puts_landmarks_on_the_template(size: int) -> None:
    """Paint five dots, move them by a similarity, align: the dots land on the template."""
    frame = np.zeros((240, 320, 3), np.uint8)
    points = template(112) * 0.8 + np.array([100.0, 60.0])  # a face 90 pixels wide
    angle = np.deg2rad(25)
    centre = points.mean(0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (points - centre) @ turn.T + centre
    for x, y in np.round(points).astype(int):
        frame[y - 2 : y + 3, x - 2 : x + 3] = 255
    crop = align_faces(frame[None], np.array([0]), points[None], size)[0]
    assert crop.shape == (size, size, 3)
    for x, y in template(size):
        r = max(2, size // 28)
        patch = crop[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1, 0]
        assert patch.max() > 100, f"no dot near the template point ({x:.0f}, {y:.0f})"
    assert crop[..., 0].mean() < 60  # the rest stays dark


#: The published five-point layout of 112x112 face-recognition crops, (x, y) pixels, in MTCNN's
#: landmark order (the face's left eye is on the image's left), written out here rather than read
#: from raypipe so a template or order error in the code fails this test.
LAYOUT_112 = {
    "left eye": ((38.2946, 51.6963), (255, 0, 0)),
    "right eye": ((73.5318, 51.5014), (0, 255, 0)),
    "nose": ((56.0252, 71.7366), (0, 0, 255)),
    "mouth left": ((41.5493, 92.3655), (255, 255, 0)),
    "mouth right": ((70.7299, 92.2041), (0, 255, 255)),
}


def test_each_landmark_lands_on_its_own_template_point() -> None:
    """An upright face 1.5x the template's size, each of its five points painted its own
    colour: after alignment each colour sits on its own template point (by hand: the similarity
    is a scale of 1/1.5 and a shift, no rotation), so swapped or reordered points fail."""
    frame = np.zeros((240, 320, 3), np.uint8)
    landmarks = []
    for (x, y), colour in LAYOUT_112.values():
        fx, fy = 1.5 * x + 50.0, 1.5 * y + 30.0
        landmarks.append((fx, fy))
        cx, cy = round(fx), round(fy)
        frame[cy - 3 : cy + 4, cx - 3 : cx + 4] = colour
    crop = align_faces(frame[None], np.array([0]), np.array(landmarks)[None], 112)[0].astype(int)
    rows, cols = np.mgrid[0:112, 0:112]
    for name, ((x, y), colour) in LAYOUT_112.items():
        on = np.array(colour) > 0
        mask = (crop[..., on] > 100).all(-1) & (crop[..., ~on] < 50).all(-1)
        assert mask.sum() >= 4, f"the {name} colour is missing from the aligned crop"
        centre = (cols[mask].mean(), rows[mask].mean())
        assert np.hypot(centre[0] - x, centre[1] - y) < 1.5, (
            f"the {name} lands at ({centre[0]:.1f}, {centre[1]:.1f}), not ({x:.1f}, {y:.1f})"
        )


def test_alignment_undoes_in_plane_rotation_of_a_real_face() -> None:
    from skimage import data
    from skimage.transform import rotate

    image = data.astronaut()[:320, 60:380]  # her face, upright
    tilted = (rotate(image, 25, resize=False, mode="constant") * 255).astype(np.uint8)
    detector = shared_detector(20, "cpu")
    found = detector.detect(np.stack([image, tilted]))
    assert len(found[0]) >= 1 and len(found[1]) >= 1
    crops = [
        align_faces(frame[None], np.array([0]), det.landmarks[:1], 112)[0]
        for frame, det in zip((image, tilted), found, strict=True)
    ]
    aligned_gap = np.abs(crops[0].astype(float) - crops[1].astype(float)).mean()
    plain = image[100:212, 130:242].astype(float)
    plain_tilted = tilted[100:212, 130:242].astype(float)
    assert aligned_gap < 0.5 * np.abs(plain - plain_tilted).mean()


def test_tracker_links_moving_faces_and_picks_the_main_track() -> None:
    tracker = FaceTracker(iou_threshold=0.3, max_gap=2)
    ids = []
    for t in range(10):
        boxes = [[10 + 2 * t, 10, 60 + 2 * t, 60]]  # the speaker drifts right
        if t % 3 == 0:
            boxes.append([200, 10, 260, 70])  # a bigger face seen now and then
        ids.append(tracker.update(np.array(boxes, np.float32)))
    speaker = {int(i[0]) for i in ids}
    assert len(speaker) == 1
    assert tracker.main_track() == speaker.pop()
    assert len(tracker.tracks) == 2  # the other face is one track despite its gaps


def test_tracker_ends_tracks_after_a_long_gap_and_handles_empty_frames() -> None:
    tracker = FaceTracker(max_gap=1)
    first = tracker.update(np.array([[0, 0, 10, 10]]))
    for _ in range(3):
        assert tracker.update(np.zeros((0, 4))).shape == (0,)
    again = tracker.update(np.array([[0, 0, 10, 10]]))
    assert first[0] != again[0]
    assert iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == (
        pytest.approx(1 / 3)
    )
    assert FaceTracker().main_track() is None


def test_carphone_has_a_face_in_nearly_every_frame_and_one_main_track() -> None:
    from raypipe.faces.analysis import FaceSettings, FrameWindow, stats_for, window_faces
    from raypipe.media.context import MediaContext

    path = weight_file("media/carphone_pristine.mp4")
    assert Path(path).is_file()
    media = MediaContext("carphone", path, fps=10, window_frames=16)
    settings = FaceSettings()
    row = 0
    per_frame_tracks = []
    for index, part in enumerate(media.windows()):
        faces = window_faces(media, FrameWindow(index, part, row), settings)
        row += len(part)
        per_frame_tracks.extend(ids.tolist() for ids in faces.track_ids)
    stats = stats_for(media, settings)
    assert stats.frames == 40 and stats.face_frames >= 38
    tracker = media.shared(f"tracker:{settings.key}", lambda: None)
    main = tracker.main_track()
    main_frames = sum(main in ids for ids in per_frame_tracks)
    assert main_frames >= 38
    assert tracker.tracks[main].frames == main_frames
