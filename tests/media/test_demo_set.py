"""The demo set: layout, decodability, determinism, and what each modality encodes."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from raypipe.labels import EMOTIW7
from raypipe.media.demo_set import (
    BROKEN_IDS,
    TEXT_GROUP_SENTENCES,
    audio_group,
    demo_sentence,
    make_broken_media,
    make_demo_dataset,
    text_group,
    visual_group,
)
from raypipe.media.manifest import load_manifest
from raypipe.media.speech import estimate_f0

# The shared ``demo_set`` fixture (tests/conftest.py): 4 clips per class, seed 1, with broken
# files, default clip settings (2 s at 10 fps, 240x320).
FRAMES, HEIGHT, WIDTH, FPS, SECONDS = 20, 240, 320, 10.0, 2.0
# The face sits in the middle of the frame; this box stays inside it despite the drift.
FACE_BOX = (slice(70, 170), slice(120, 200))


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """RGB frames (T, H, W, 3), mono audio and its sample rate, decoded with PyAV."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, audio, rate


def _good_rows(manifest: Path) -> list[dict[str, str]]:
    return [row for row in _rows(manifest) if row["media_id"] not in BROKEN_IDS]


@pytest.fixture(scope="module")
def clip_stats(demo_set: Path) -> dict[str, np.ndarray]:
    """Per clip: class index, face-box mean grey level and contrast, and voice f0 (Hz)."""
    stats: dict[str, list[float]] = {"label": [], "brightness": [], "contrast": [], "f0": []}
    for row in _good_rows(demo_set):
        frames, audio, rate = _decode(demo_set.parent / row["path"])
        grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        face = grey[:, FACE_BOX[0], FACE_BOX[1]]
        stats["label"].append(EMOTIW7.index(row["label"]))
        stats["brightness"].append(float(face.mean()))
        stats["contrast"].append(float(face.std(axis=(1, 2)).mean()))
        stats["f0"].append(estimate_f0(audio, rate))
    return {key: np.array(values) for key, values in stats.items()}


def _nearest_centroid_accuracy(features: np.ndarray, groups: np.ndarray) -> float:
    """Leave-one-out accuracy of a nearest-centroid classifier on standardised features."""
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    correct = 0
    for index in range(len(features)):
        keep = np.arange(len(features)) != index
        names = np.unique(groups[keep])
        centroids = np.stack([features[keep & (groups == g)].mean(axis=0) for g in names])
        guess = names[np.argmin(((centroids - features[index]) ** 2).sum(axis=1))]
        correct += int(guess == groups[index])
    return correct / len(features)


def test_manifest_layout_balance_and_splits(demo_set: Path) -> None:
    rows = _rows(demo_set)
    assert demo_set.name == "manifest.csv"
    assert list(rows[0]) == ["media_id", "path", "label", "split"]
    good = _good_rows(demo_set)
    assert Counter(row["label"] for row in good) == dict.fromkeys(EMOTIW7, 4)
    for label in EMOTIW7:
        splits = Counter(row["split"] for row in good if row["label"] == label)
        assert splits == {"train": 2, "val": 1, "test": 1}, label
    for row in rows:
        assert row["path"] == f"media/{row['media_id']}.mp4"
        assert (demo_set.parent / row["path"]).is_file()
    assert len({row["media_id"] for row in rows}) == len(rows)
    table, issues = load_manifest(demo_set)
    assert not issues and len(table) == len(rows)


def test_broken_rows_are_listed_as_neutral_test(demo_set: Path) -> None:
    broken = [row for row in _rows(demo_set) if row["media_id"] in BROKEN_IDS]
    assert sorted(row["media_id"] for row in broken) == sorted(BROKEN_IDS)
    assert all(row["label"] == "Neutral" and row["split"] == "test" for row in broken)


def test_clips_decode_with_pyav_and_decord(demo_set: Path) -> None:
    for row in _good_rows(demo_set)[::3]:
        path = demo_set.parent / row["path"]
        frames, audio, rate = _decode(path)
        assert abs(len(frames) - FRAMES) <= 1
        assert frames.shape[1:] == (HEIGHT, WIDTH, 3)
        assert rate == 16000
        assert len(audio) / rate == pytest.approx(SECONDS, abs=0.1)
        assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
        with av.open(str(path)) as container:
            assert float(container.streams.video[0].average_rate) == pytest.approx(FPS)
        reader = decord.VideoReader(str(path))
        assert abs(len(reader) - FRAMES) <= 1
        assert reader.get_avg_fps() == pytest.approx(FPS)
        assert reader[0].asnumpy().shape == (HEIGHT, WIDTH, 3)


def test_visual_groups_differ_in_face_region(clip_stats: dict[str, np.ndarray]) -> None:
    groups = np.array([visual_group(int(c)) for c in clip_stats["label"]])
    brightness = [clip_stats["brightness"][groups == g].mean() for g in range(4)]
    contrast = [clip_stats["contrast"][groups == g].mean() for g in range(4)]
    # Group 0 darker and group 1 brighter than Neutral; group 2 blurred, low contrast.
    assert brightness[0] + 15 < brightness[3] < brightness[1] - 15
    assert contrast[2] + 10 < contrast[3]
    features = np.stack([clip_stats["brightness"], clip_stats["contrast"]], axis=1)
    accuracy = _nearest_centroid_accuracy(features, groups)
    assert accuracy >= 0.75, accuracy
    # Pair partners (e.g. Angry vs Disgust) share a visual group: the face does not tell them
    # apart, so the class-level accuracy of the same classifier stays far below 1.
    class_accuracy = _nearest_centroid_accuracy(features, clip_stats["label"])
    assert class_accuracy < 0.75, class_accuracy


def test_audio_groups_differ_in_pitch(clip_stats: dict[str, np.ndarray]) -> None:
    f0 = clip_stats["f0"]
    assert np.isfinite(f0).all()
    groups = np.array([audio_group(int(c)) for c in clip_stats["label"]])
    medians = [float(np.median(f0[groups == g])) for g in range(3)]
    assert medians[0] * 1.15 < medians[1] and medians[1] * 1.2 < medians[2]
    assert _nearest_centroid_accuracy(f0[:, None], groups) >= 0.9
    # Angry, Fear and Sad share a voice: pitch alone cannot tell them apart.
    assert _nearest_centroid_accuracy(f0[:, None], clip_stats["label"]) < 0.6


def test_groups_together_identify_the_class() -> None:
    pairs = {(visual_group(c), audio_group(c)) for c in range(len(EMOTIW7))}
    assert len(pairs) == len(EMOTIW7)
    assert [visual_group(c) for c in range(7)] == [0, 0, 1, 1, 2, 2, 3]
    assert [audio_group(c) for c in range(7)] == [0, 1, 0, 1, 0, 1, 2]


def _content_hash(manifest: Path) -> str:
    digest = hashlib.sha256()
    for row in _rows(manifest):
        frames, audio, _ = _decode(manifest.parent / row["path"])
        digest.update(row["media_id"].encode())
        digest.update(frames.tobytes())
        digest.update(audio.astype(np.float32).tobytes())
    return digest.hexdigest()


def test_same_seed_gives_identical_output(tmp_path: Path) -> None:
    options = {"clips_per_class": 1, "duration_s": 1.0, "fps": 8.0, "frame_size": (120, 160)}
    first = make_demo_dataset(tmp_path / "a", seed=5, **options)
    second = make_demo_dataset(tmp_path / "b", seed=5, **options)
    other = make_demo_dataset(tmp_path / "c", seed=6, **options)
    assert first.read_bytes() == second.read_bytes()
    assert _content_hash(first) == _content_hash(second)
    assert _content_hash(first) != _content_hash(other)
    for row in _rows(first):  # the files themselves are byte-identical too
        assert (first.parent / row["path"]).read_bytes() == (
            second.parent / row["path"]
        ).read_bytes()


def test_splits_are_stratified_for_any_seed(tmp_path: Path) -> None:
    options = {"clips_per_class": 4, "duration_s": 0.4, "fps": 5.0, "frame_size": (32, 48)}
    assignments = []
    for seed in (1, 2):
        rows = _rows(make_demo_dataset(tmp_path / str(seed), seed=seed, **options))
        for label in EMOTIW7:
            splits = Counter(row["split"] for row in rows if row["label"] == label)
            assert splits == {"train": 2, "val": 1, "test": 1}
        assignments.append([row["split"] for row in rows])
    assert assignments[0] != assignments[1]
    frames, _, _ = _decode(tmp_path / "1" / "media" / "angry_000.mp4")
    assert frames.shape[1:] == (32, 48, 3) and abs(len(frames) - 2) <= 1


def test_works_without_espeak_using_synthetic_voice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on PATH
    options = {"clips_per_class": 1, "duration_s": 1.0, "fps": 5.0, "frame_size": (64, 80)}
    manifest = make_demo_dataset(tmp_path / "demo", **options)
    f0 = {}
    for row in _rows(manifest):
        _, audio, rate = _decode(manifest.parent / row["path"])
        f0[row["label"]] = estimate_f0(audio, rate)
    assert f0["Angry"] < f0["Disgust"] < f0["Neutral"]
    assert f0["Sad"] < f0["Surprise"] < f0["Neutral"]


def test_make_broken_media_files_fail_to_decode(demo_set: Path, tmp_path: Path) -> None:
    good = demo_set.parent / _good_rows(demo_set)[0]["path"]
    broken = make_broken_media(tmp_path, good)
    assert sorted(broken) == sorted(BROKEN_IDS)
    assert 0 < broken["broken_truncated"].stat().st_size <= 0.3 * good.stat().st_size
    assert broken["broken_empty"].stat().st_size == 0
    for path in broken.values():
        assert path.suffix == ".mp4"
        with pytest.raises(av.FFmpegError), av.open(str(path)) as container:
            next(container.decode(video=0))
        with pytest.raises(RuntimeError, match="Error reading"):
            decord.VideoReader(str(path))


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clips_per_class"):
        make_demo_dataset(tmp_path, clips_per_class=0)
    with pytest.raises(ValueError, match="splits"):
        make_demo_dataset(tmp_path, splits=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="frame_size"):
        make_demo_dataset(tmp_path, frame_size=(241, 320))


def test_text_groups_carry_part_of_the_label_in_shared_words() -> None:
    assert [text_group(c) for c in range(7)] == [0, 0, 0, 1, 0, 1, 2]
    negative, positive = (set(" ".join(g).lower().split()) for g in TEXT_GROUP_SENTENCES[:2])
    assert negative & positive  # shared frames ("this is", "i feel so", "what a")
    assert negative - positive and positive - negative
    rng = np.random.default_rng(0)
    said = {c: [demo_sentence(c, rng) for _ in range(400)] for c in range(7)}
    assert set(said[6]) <= set(TEXT_GROUP_SENTENCES[2])
    for c in (0, 3):
        own = np.mean([s in TEXT_GROUP_SENTENCES[text_group(c)] for s in said[c]])
        assert 0.6 < own < 0.8  # 30% of non-neutral clips say a neutral sentence
