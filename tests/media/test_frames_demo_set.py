"""The frame-level demo set: one annotation line per native frame, labels drawn from the
planted segments, unlabelled frames and stretches without a face, determinism."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from raypipe.labels import ABAW_AU12, ABAW_EXPR8
from raypipe.media.datasets.abaw import TASKS, read_annotation
from raypipe.media.frames_demo_set import (
    AU_PROTOTYPES,
    VA_CENTRES,
    make_frames_demo_dataset,
    plan_video,
    segment_labels,
)
from raypipe.media.manifest import load_manifest
from raypipe.media.probe import probe

VIDEOS, SECONDS, FPS = 6, 3.0, 25.0
HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def frames_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("frames_demo")
    return make_frames_demo_dataset(
        root, videos=VIDEOS, seed=3, duration_s=SECONDS, fps=FPS, frame_size=(HEIGHT, WIDTH)
    )


def _segments(manifest: Path) -> pd.DataFrame:
    return pd.read_csv(manifest.parent / "segments.csv", keep_default_na=False)


def test_manifest_lists_every_video_with_its_annotations_and_splits(frames_set: Path) -> None:
    table = pd.read_csv(frames_set)
    assert len(table) == VIDEOS
    assert set(table["split"]) == {"train", "val", "test"}
    for task in TASKS:
        assert (table[f"{task}_split"] == table["split"]).all()
        assert all(Path(p).is_file() for p in table[task])
    loaded, issues = load_manifest(frames_set, label_columns=())
    assert not issues and len(loaded) == VIDEOS


def test_annotation_files_hold_one_line_per_native_frame(frames_set: Path) -> None:
    table = pd.read_csv(frames_set)
    for row in table.itertuples():
        info = probe(frames_set.parent / row.path)
        assert info.frame_count == round(SECONDS * FPS)
        assert info.fps == pytest.approx(FPS)
        for task in TASKS:
            lines = Path(getattr(row, task)).read_text().splitlines()
            assert len(lines) == info.frame_count + 1, (row.media_id, task)
            assert len(read_annotation(getattr(row, task), task)) == info.frame_count


def test_expression_labels_are_the_planted_segments(frames_set: Path) -> None:
    table = pd.read_csv(frames_set).set_index("media_id")
    segments = _segments(frames_set)
    for media_id, rows in segments[segments["kind"] == "segment"].groupby("media_id"):
        expected = np.full(round(SECONDS * FPS), -1)
        for row in rows.itertuples():
            expected[row.start_frame : row.stop_frame] = ABAW_EXPR8.index(row.expr)
        assert (expected >= 0).all(), "segments cover every frame"
        labels = read_annotation(table.loc[media_id, "expr"], "expr")
        assert np.array_equal(labels.values[labels.mask], expected[labels.mask])
        assert labels.names == ABAW_EXPR8


def test_au_and_va_follow_each_segments_class() -> None:
    plan = plan_video("v", "train", 500, FPS, np.random.default_rng(0))
    truth = segment_labels(plan)
    prototypes = np.array([np.isin(ABAW_AU12, units) for units in AU_PROTOTYPES])
    au_labelled = plan.au.mask.all(axis=1)
    agree = plan.au.values[au_labelled] == prototypes[truth[au_labelled]]
    assert agree.mean() > 0.8  # a few units flipped per segment, most as the prototype
    va_labelled = plan.va.mask.all(axis=1)
    centres = np.asarray(VA_CENTRES)[truth[va_labelled]]
    error = np.abs(plan.va.values[va_labelled] - centres)
    assert np.median(error) < 0.15 and np.abs(plan.va.values[va_labelled]).max() <= 1.0
    # Per-frame noise: a quarter of the frames show another class's cue.
    assert 0.1 < (plan.shown != truth).mean() < 0.4


def test_unlabelled_frames_are_written_as_minus_one_and_minus_five(frames_set: Path) -> None:
    table = pd.read_csv(frames_set)
    for row in table.itertuples():
        expr_lines = Path(row.expr).read_text().splitlines()[1:]
        au_lines = Path(row.au).read_text().splitlines()[1:]
        va_lines = Path(row.va).read_text().splitlines()[1:]
        assert "-1" in expr_lines
        assert ",".join(["-1"] * len(ABAW_AU12)) in au_lines
        assert "-5,-5" in va_lines
        for task in TASKS:
            labels = read_annotation(getattr(row, task), task)
            assert 0.5 < labels.mask.mean() < 1.0


def _centre_spread(path: Path) -> np.ndarray:
    """Per decoded frame: the standard deviation of the grey levels in the frame's centre."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    centre = (slice(HEIGHT // 4, 3 * HEIGHT // 4), slice(WIDTH // 3, 2 * WIDTH // 3))
    return np.array([float(frame[centre].std()) for frame in frames])


def test_no_face_stretches_show_only_the_background(frames_set: Path) -> None:
    segments = _segments(frames_set)
    stretches = segments[segments["kind"] == "no_face"]
    assert len(stretches) >= 1
    paths = dict(pd.read_csv(frames_set)[["media_id", "path"]].itertuples(index=False))
    for row in stretches.itertuples():
        spread = _centre_spread(frames_set.parent / paths[row.media_id])
        inside = np.zeros(len(spread), bool)
        inside[row.start_frame : row.stop_frame] = True
        assert spread[inside].max() < 10.0  # tint, shading and pixel noise only
        assert spread[~inside].min() > 15.0  # a face


def test_same_seed_writes_the_same_annotations(tmp_path: Path, frames_set: Path) -> None:
    again = make_frames_demo_dataset(
        tmp_path, videos=VIDEOS, seed=3, duration_s=SECONDS, fps=FPS, frame_size=(HEIGHT, WIDTH)
    )
    first = sorted((frames_set.parent / "annotations").rglob("*.txt"))
    second = sorted((again.parent / "annotations").rglob("*.txt"))
    assert [p.relative_to(frames_set.parent) for p in first] == [
        p.relative_to(again.parent) for p in second
    ]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True))
    assert (again.parent / "segments.csv").read_bytes() == (
        frames_set.parent / "segments.csv"
    ).read_bytes()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="videos"):
        make_frames_demo_dataset(tmp_path, videos=2)
    with pytest.raises(ValueError, match="frame_size"):
        make_frames_demo_dataset(tmp_path, frame_size=(48, 64))
