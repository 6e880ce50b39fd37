"""Visual extractors on real media with real weights: one decode and one face pass shared by
all of them, face policies, images as media, crops, backbones from a local checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raypipe.errors import ConfigError
from raypipe.extractors.process import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.faces.analysis import shared_detector
from raypipe.media.context import MediaContext
from raypipe.models.backbones import build_backbone
from raypipe.store.feature_store import FeatureStore
from raypipe.weights import weight_file

CARPHONE = weight_file("media/carphone_pristine.mp4")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 checkpoint folder (random weights, seeded) as the trainer would write it."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "resnet18"
    folder.mkdir()
    torch.save({"model": build_backbone("resnet18").net.state_dict()}, folder / "model.pt")
    return folder


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two copies of a real face side by side, saved as an RGBA PNG (a tiny group photo)."""
    from skimage import data

    face = data.astronaut()[20:240, 120:320]
    photo = np.concatenate([face, face[:, ::-1]], axis=1)
    alpha = np.full((*photo.shape[:2], 1), 255, np.uint8)
    path = tmp_path_factory.mktemp("img") / "group.png"
    Image.fromarray(np.concatenate([photo, alpha], axis=2), "RGBA").save(path)
    return path


def test_extractors_share_one_decode_and_one_detection_pass(
    tmp_path: Path, checkpoint: Path, monkeypatch
) -> None:
    detector = shared_detector(20, "cpu")
    calls = []
    original = detector.detect
    monkeypatch.setattr(
        detector, "detect", lambda frames: calls.append(len(frames)) or original(frames)
    )
    extractors = [
        build_extractor("face_expression"),
        build_extractor("face_hog"),
        build_extractor("face_lbp"),
        build_extractor("face_backbone", {"checkpoint": str(checkpoint), "crop_size": 64}),
        build_extractor("face_tracks", {"store_crops": True, "crop_size": 48}),
    ]
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    media = MediaContext("carphone", CARPHONE, fps=5, window_frames=8)
    outcomes = process_media(media, extractors, store)
    assert [o.status for o in outcomes] == ["ok"] * 5
    assert sum(calls) == 20 and len(calls) == 3  # 20 frames in windows of 8: detected once
    for extractor in extractors:
        rows = store.media_table(extractor.name, extractor.version).iloc[0]
        assert rows["frames"] == 20 and rows["face_frames"] >= 19 and rows["tracks"] >= 1
        assert rows["face_score"] > 0.9 and rows["decode_s"] > 0 and rows["faces_s"] > 0
        frames = store.frame_table(extractor.name, extractor.version)
        vectors = np.stack(frames[frames["has_face"]]["features"])
        assert vectors.shape[1] == extractor.dim and np.isfinite(vectors).all()
    hog = store.frame_table("face_hog", extractors[1].version)
    assert len(hog) == 20 and hog["main_track"].fillna(True).all()
    crops = store.crop_table("face_tracks", extractors[4].version)
    assert len(crops) >= 19 and set(crops["size"]) == {48}
    pixels = np.frombuffer(crops["pixels"].iloc[0], np.uint8).reshape(48, 48, 3)
    assert pixels.std() > 10  # a real face, not an empty crop


def test_images_run_as_one_frame_media_with_all_faces(group_photo: Path, tmp_path: Path) -> None:
    extractor = build_extractor("face_tracks", {"faces": "all"})
    media = MediaContext("group", group_photo, max_side=480)
    result = extractor.extract(media)
    table = result.frame_rows.to_pandas()
    assert result.media_row["frames"] == 1 and (table["timestamp_s"] == 0).all()
    assert len(table) == 2 and table["has_face"].all()
    assert sorted(table["face_index"]) == [0, 1] and table["main_track"].sum() == 1
    geometry = np.stack(table["features"])
    assert ((geometry > 0) & (geometry < 1)).mean() > 0.9  # landmarks inside their boxes
    main = build_extractor("face_expression", {"faces": "main"}).extract(
        MediaContext("group", group_photo, max_side=480)
    )
    assert len(main.frame_rows) == 1


def test_frames_without_faces_stay_as_rows(tmp_path: Path) -> None:
    from raypipe.media.writer import write_clip

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 40, size=(10, 64, 96, 3), dtype=np.uint8)
    path = tmp_path / "noface.mp4"
    write_clip(path, frames, fps=5)
    result = build_extractor("face_expression").extract(MediaContext("n", path, fps=5))
    table = result.frame_rows.to_pandas()
    assert len(table) == 10 and not table["has_face"].any()
    assert table["features"].isna().all() and result.media_row["face_frames"] == 0


def test_backbone_on_whole_frames_and_its_version_follows_the_checkpoint(
    checkpoint: Path, tmp_path: Path
) -> None:
    frame_level = build_extractor(
        "face_backbone", {"checkpoint": str(checkpoint), "input": "frame", "crop_size": 64}
    )
    result = frame_level.extract(MediaContext("c", CARPHONE, fps=2))
    table = result.frame_rows.to_pandas()
    assert len(table) == 8 and np.stack(table["features"]).shape == (8, 512)
    same = build_extractor(
        "face_backbone", {"checkpoint": str(checkpoint), "input": "frame", "crop_size": 64}
    )
    assert same.version == frame_level.version
    torch.manual_seed(1)
    other = tmp_path / "tuned.pt"
    torch.save(build_backbone("resnet18").net.state_dict(), other)
    tuned = build_extractor(
        "face_backbone", {"checkpoint": str(other), "input": "frame", "crop_size": 64}
    )
    assert tuned.version != frame_level.version
    with pytest.raises(ConfigError, match="checkpoint is not set"):
        build_extractor("face_backbone", {})


def test_one_extractor_failing_leaves_the_others(tmp_path: Path) -> None:
    hog = build_extractor("face_hog")
    lbp = build_extractor("face_lbp")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    lbp.describe = broken  # an extractor bug, not a file problem
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    outcomes = process_media(MediaContext("c", CARPHONE, fps=2), [hog, lbp], store)
    status = {o.extractor: (o.status, o.error) for o in outcomes}
    assert status["face_hog"] == ("ok", None)
    assert status["face_lbp"][0] == "failed" and "RuntimeError: boom" in status["face_lbp"][1]


def test_a_hanging_file_fails_alone_and_the_next_media_succeeds(
    tmp_path: Path, monkeypatch
) -> None:
    import shutil

    from raypipe.media.decoder_process import FAULT_ENV, DecoderProcess

    hanging = tmp_path / "stuck-file.mp4"
    shutil.copy(CARPHONE, hanging)
    monkeypatch.setenv(FAULT_ENV, "hang:stuck-file")
    decoder = DecoderProcess(timeout_s=2)
    extractors = [build_extractor("face_expression"), build_extractor("face_hog")]
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    try:
        bad = process_media(MediaContext("stuck", hanging, decoder=decoder), extractors, store)
        good = process_media(
            MediaContext("ok", CARPHONE, fps=2, decoder=decoder), extractors, store
        )
    finally:
        decoder.close()
    assert [o.status for o in bad] == ["failed", "failed"]
    assert all("hung" in o.error and "stuck-file.mp4" in o.error for o in bad)
    assert [o.status for o in good] == ["ok", "ok"]
    rows = store.media_table("face_hog", extractors[1].version).set_index("media_id")
    assert rows.loc["ok", "frames"] == 8 and rows.loc["stuck", "status"] == "failed"


def test_align_feeds_the_fer_cnn_five_point_aligned_crops(tmp_path: Path) -> None:
    """``face_expression`` with ``align: true`` on a real face turned 25 degrees: the CNN sees
    the 5-point aligned crop (its features are the CNN's on that crop, whose eyes MTCNN finds
    level), so the tilted face embeds nearly as the upright one; box crops (``align: false``)
    keep the tilt and embed differently."""
    from skimage import data
    from skimage.transform import rotate

    from raypipe.faces.align import align_faces

    upright = data.astronaut()[:320, 60:380]
    tilted = (rotate(upright, 25, resize=False, mode="constant") * 255).astype(np.uint8)
    paths = {}
    for name, image in (("upright", upright), ("tilted", tilted)):
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(image).save(paths[name])
    features, rows = {}, {}
    extractors = {
        align: build_extractor("face_expression", {"align": align}) for align in (False, True)
    }
    for align, extractor in extractors.items():
        for name, path in paths.items():
            table = extractor.extract(MediaContext(name, path, max_side=320)).frame_rows
            rows[(align, name)] = table.to_pandas().iloc[0]
            assert len(table) == 1 and rows[(align, name)]["has_face"]
            features[(align, name)] = np.asarray(rows[(align, name)]["features"])

    # The CNN's input under align: true is the aligned crop of the stored landmarks.
    landmarks = np.asarray(rows[(True, "tilted")]["landmarks"], np.float64).reshape(5, 2)
    left_eye, right_eye = landmarks[0], landmarks[1]
    assert abs(right_eye[1] - left_eye[1]) > 0.25 * (right_eye[0] - left_eye[0])  # tilted
    (frame,) = [part.frames for part in MediaContext("t", paths["tilted"], max_side=320).windows()]
    aligner = extractors[True]
    crop = align_faces(frame, np.array([0]), landmarks[None], aligner.crop_size, aligner.margin)
    expected = aligner.embedder.embed(crop)["features"][0]
    np.testing.assert_array_equal(features[(True, "tilted")], expected)
    (found,) = shared_detector(20, "cpu").detect(crop)
    eyes = found.landmarks[0][:2]
    assert abs(eyes[1, 1] - eyes[0, 1]) < 0.1 * (eyes[1, 0] - eyes[0, 0])  # level in the crop

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    aligned = distance(features[(True, "upright")], features[(True, "tilted")])
    boxed = distance(features[(False, "upright")], features[(False, "tilted")])
    assert aligned < 0.3 * boxed, (aligned, boxed)
    assert distance(features[(True, "upright")], features[(False, "upright")]) > 0.05
