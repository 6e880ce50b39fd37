"""Frame-level training data from a store's frame rows and an ABAW annotation folder (or a
label table): one row per sampled frame, labels attached by time at the native rate, frames
without a face kept and marked, audio spans averaged around each frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.config.frames import FrameDataConfig, SpanFeaturesConfig
from raypipe.errors import ConfigError
from raypipe.models.sequence import frame_windows
from raypipe.recipes.frames import build_frame_data, span_means
from tests.recipes.frame_store import NATIVE_FPS, SAMPLE_FPS, write_tiny_frames


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return write_tiny_frames(tmp_path_factory.mktemp("frames"))


def test_rows_labels_and_masks_follow_the_annotation_lines(tiny: tuple[str, Path]) -> None:
    store, annotations = tiny
    data = build_frame_data(
        FrameDataConfig(store=store, extractors=["vis"], annotations=str(annotations), fps=25)
    )
    assert len(data) == 7 * 40 and data.dim == 8
    assert data.classes[0] == "Neutral" and len(data.au_names) == 12
    t0 = data.media_id == "t0"
    # Sampled frame i is at i / 5 s: native frame 5 i, whose class is (5 i // 50) % 4 (t0).
    i = np.arange(40)
    np.testing.assert_allclose(data.t_s[t0], i / SAMPLE_FPS, atol=1e-6)
    expected = (5 * i // 50) % 4
    assert data.expr[t0][0] == -1  # native frames 0-4 are unlabelled
    np.testing.assert_array_equal(data.expr[t0][1:], expected[1:])
    au1 = np.isin(expected, (1, 3)).astype(np.float32)
    np.testing.assert_array_equal(data.au[t0][1:, 0], au1[1:])
    assert not data.au_mask[t0][0].any() and data.au_mask[t0][1:].all()
    np.testing.assert_allclose(data.va[t0][1:, 0], expected[1:] / 4 - 0.4, atol=1e-6)
    assert not data.va_mask[t0][0].any()
    # Frames without a face are rows, marked, with zero features, and keep their labels.
    assert not data.has_face[t0][3] and not data.has_face[t0][4] and data.has_face[t0][5]
    assert (data.features[t0][3] == 0).all() and data.expr[t0][3] == 0
    # Splits from the store's manifest; the test video has rows but no label.
    assert set(data.split[data.media_id == "v0"]) == {"val"}
    test = data.split == "test"
    assert test.sum() == 40 and (data.expr[test] == -1).all() and not data.au_mask[test].any()
    assert not data.labelled()[test].any()


def test_labels_are_attached_at_the_native_rate(tiny: tuple[str, Path]) -> None:
    store, annotations = tiny
    # Read as if the videos ran at 5 fps: sampled frame i is annotation line i, not 5 i.
    data = build_frame_data(
        FrameDataConfig(store=store, extractors=["vis"], annotations=str(annotations), fps=5)
    )
    t0 = data.media_id == "t0"
    native_class = (np.arange(200) // 50) % 4
    np.testing.assert_array_equal(data.expr[t0][5:], native_class[5:40])
    assert NATIVE_FPS == 25.0


def test_a_label_table_gives_the_same_rows(tiny: tuple[str, Path], tmp_path: Path) -> None:
    store, annotations = tiny
    reference = build_frame_data(
        FrameDataConfig(store=store, extractors=["vis"], annotations=str(annotations), fps=25)
    )
    native = np.arange(200)
    cls = (native // 50) % 4
    table = pd.DataFrame(
        {
            "media_id": "t0",
            "frame": native,
            "expr": np.where(native < 5, -1, cls),
            "AU1": np.where(native < 5, -1, np.isin(cls, (1, 3)).astype(int)),
            "valence": np.where(native < 5, -5, cls / 4 - 0.4),
        }
    )
    path = tmp_path / "labels.csv"
    table.to_csv(path, index=False)
    data = build_frame_data(
        FrameDataConfig(store=store, extractors=["vis"], labels_table=str(path), fps=25)
    )
    t0 = data.media_id == "t0"
    np.testing.assert_array_equal(data.expr[t0], reference.expr[t0])
    np.testing.assert_array_equal(data.au[t0][:, 0], reference.au[t0][:, 0])
    np.testing.assert_array_equal(data.au_mask[t0][:, 0], reference.au_mask[t0][:, 0])
    assert not data.au_mask[t0][:, 1].any()  # AU2 absent from the table: unlabelled
    np.testing.assert_array_equal(data.va_mask[t0][:, 0], reference.va_mask[t0][:, 0])
    assert not data.va_mask[t0][:, 1].any()
    assert (data.expr[data.media_id == "t1"] == -1).all()  # a media without rows


def test_audio_spans_are_averaged_around_each_frame(tiny: tuple[str, Path]) -> None:
    store, annotations = tiny
    spans = SpanFeaturesConfig(extractor="lld", kind="lld", window_s=0.02)
    data = build_frame_data(
        FrameDataConfig(
            store=store, extractors=["vis"], spans=[spans], annotations=str(annotations), fps=25
        )
    )
    assert data.dim == 10 and data.feature_names[-1] == "lld:1"
    t0 = data.media_id == "t0"
    # The audio's first value is the class of the native frame playing at the span's time.
    expected = ((5 * np.arange(40)) // 50) % 4
    # Away from a segment change every span in the 20 ms window has the frame's class; at a
    # change (frames 10, 20, 30) 25 ms spans of the previous segment still overlap it.
    audio = data.features[t0][:, 8]
    inside = np.ones(40, bool)
    inside[[10, 20, 30]] = False
    inside[[3, 4]] = False  # no face: the audio part is there anyway, checked below
    np.testing.assert_allclose(audio[inside], expected[inside], atol=1e-6)
    np.testing.assert_allclose(audio[[3, 4]], expected[[3, 4]], atol=1e-6)
    assert all(expected[i] - 1 < audio[i] < expected[i] for i in (10, 20, 30))
    np.testing.assert_allclose(data.features[t0][:, 9], 1.0)


def test_span_means_by_hand() -> None:
    starts = np.array([0.0, 1.0, 2.0, 3.0])
    ends = starts + 1.0
    values = np.array([[1.0], [2.0], [4.0], [8.0]])
    means, found = span_means(starts, ends, values, np.array([0.5, 2.0, 9.0]), 1.0)
    # [0, 1) overlaps span 0 only; [1.5, 2.5) spans 1 and 2; 9 s none.
    np.testing.assert_allclose(means[:, 0], [1.0, 3.0, 0.0])
    assert found.tolist() == [True, True, False]


def test_missing_extractor_and_labels_are_one_sentence(tiny: tuple[str, Path]) -> None:
    store, annotations = tiny
    with pytest.raises(ConfigError, match="has no extractor 'nope'"):
        build_frame_data(
            FrameDataConfig(store=store, extractors=["nope"], annotations=str(annotations))
        )
    with pytest.raises(ConfigError, match="no labels"):
        build_frame_data(FrameDataConfig(store=store, extractors=["vis"]))
    with pytest.raises(ConfigError, match=r"data\.spans"):
        build_frame_data(
            FrameDataConfig(
                store=store,
                extractors=["vis"],
                spans=[SpanFeaturesConfig(extractor="vis")],
                annotations=str(annotations),
                fps=25,
            )
        )


def test_media_rows_cut_into_windows_stay_aligned_with_time(tiny: tuple[str, Path]) -> None:
    store, annotations = tiny
    spans = SpanFeaturesConfig(extractor="lld", kind="lld", window_s=0.02)
    data = build_frame_data(
        FrameDataConfig(
            store=store, extractors=["vis"], spans=[spans], annotations=str(annotations), fps=25
        )
    )
    sequences = dict(data.media_rows())
    assert sorted(sequences) == ["t0", "t1", "t2", "t3", "v0", "v1", "x0"]
    rows = sequences["t1"]
    assert (np.diff(data.t_s[rows]) > 0).all()
    windows, mask, starts = frame_windows(data.features[rows], data.has_face[rows], 16, 12)
    # 40 frames, windows of 16 every 12: starts 0, 12, 24 (the last ends at frame 40).
    assert starts.tolist() == [0, 12, 24] and windows.shape == (3, 16, 10)
    assert not mask[0, 3] and not mask[0, 4] and mask[0, 5]  # no face at frames 3 and 4
    assert mask[1].all() and mask[2].all()
    np.testing.assert_allclose(windows[1, 0], data.features[rows][12])
