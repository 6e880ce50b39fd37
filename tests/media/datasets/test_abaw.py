"""Aff-Wild2 / ABAW annotation files on hand-written fixtures: values, masks, the
timestamp -> frame mapping at 30 and 25 fps, errors naming file and line, the writer's round
trip, and an annotation folder as a manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.errors import ManifestError
from raypipe.labels import ABAW_AU12, ABAW_EXPR7, ABAW_EXPR8, LABEL_SPACES
from raypipe.media.datasets import DATASET_FORMATS, convert_dataset
from raypipe.media.datasets.abaw import (
    FrameLabels,
    find_annotation_files,
    format_annotation,
    frame_indices,
    labels_at_times,
    read_annotation,
    write_annotation,
)
from raypipe.media.manifest import load_manifest

EXPR8_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
EXPR7_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"
AU12_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def _file(folder: Path, name: str, *lines: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_expr_values_and_mask_with_the_eight_classes_of_abaw3(tmp_path: Path) -> None:
    path = _file(tmp_path, "v.txt", EXPR8_HEADER, "0", "-1", "7", "4", "")
    labels = read_annotation(path, "expr")
    assert labels.names == ABAW_EXPR8 and len(labels) == 4
    assert labels.values.tolist() == [0, -1, 7, 4]
    assert labels.mask.tolist() == [True, False, True, True]
    assert labels.label_space() is LABEL_SPACES.get("abaw_expr")
    assert labels.label_space().classes[4] == "Happiness"


def test_expr_of_abaw_2020_has_seven_classes_and_refuses_other(tmp_path: Path) -> None:
    good = _file(tmp_path, "a.txt", EXPR7_HEADER, "6", "0")
    labels = read_annotation(good, "expr")
    assert labels.names == ABAW_EXPR7 and labels.label_space() is LABEL_SPACES.get("abaw2020_expr")
    bad = _file(tmp_path, "b.txt", EXPR7_HEADER, "6", "7")
    with pytest.raises(ManifestError) as error:
        read_annotation(bad, "expr")
    assert str(error.value) == (
        f"{bad} line 3: expected one class index 0..6 (or -1: unlabelled), found '7'; fix the "
        "line (every line after the header holds one video frame's labels)."
    )


def test_au_masks_are_per_unit(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "v.txt",
        AU12_HEADER + " ",  # a trailing space after the header, as some files have
        "0,1,0,0,0,0,1,0,0,0,1,0",
        "-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
        "1,0,0,0,0,0,0,0,0,0,0,-1",
    )
    labels = read_annotation(path, "au")
    assert labels.names == ABAW_AU12 and labels.values.shape == (3, 12)
    assert labels.values[0].tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    assert not labels.mask[1].any()
    assert labels.mask[2].tolist() == [True] * 11 + [False]
    assert labels.values[2, 0] == 1 and labels.values[2, 11] == -1


def test_au_line_with_a_missing_column_names_file_and_line(tmp_path: Path) -> None:
    path = _file(tmp_path, "v.txt", AU12_HEADER, "0,0,0,0,0,0,0,0,0,0,0,0", "0,0,0,0,0,0,0,0,0,0,0")
    with pytest.raises(ManifestError, match=r"v\.txt line 3: expected 12 comma-separated values"):
        read_annotation(path, "au")
    two = _file(tmp_path, "w.txt", AU12_HEADER, "0,0,0,0,0,0,0,0,0,0,0,2")
    with pytest.raises(ManifestError, match=r"w\.txt line 2: .* found '0,0,0,0,0,0,0,0,0,0,0,2'"):
        read_annotation(two, "au")


def test_va_minus_five_is_unlabelled_and_out_of_range_is_an_error(tmp_path: Path) -> None:
    path = _file(tmp_path, "v.txt", "valence,arousal", "0.5,-0.25", "-5,-5", "-1,1", "0.1,-5")
    labels = read_annotation(path, "va")
    assert labels.values.dtype == np.float32 and labels.values.shape == (4, 2)
    assert labels.values[0].tolist() == [0.5, -0.25] and labels.values[2].tolist() == [-1, 1]
    assert labels.mask.tolist() == [[True, True], [False, False], [True, True], [True, False]]
    assert np.isnan(labels.values[1]).all() and np.isnan(labels.values[3, 1])
    bad = _file(tmp_path, "bad.txt", "valence,arousal", "0.5,0.5", "1.5,0")
    with pytest.raises(
        ManifestError, match=r"bad\.txt line 3: expected 'valence,arousal', each in"
    ):
        read_annotation(bad, "va")


@pytest.mark.parametrize(
    ("task", "lines", "line"),
    [
        ("expr", ["3", "1"], 1),  # no header: the first frame's line is taken for one
        ("expr", [EXPR8_HEADER, "1", "", "2"], 3),  # an empty line would shift every frame
        ("expr", [EXPR8_HEADER, "happy"], 2),
        ("au", ["valence,arousal", "0,1"], 1),
        ("va", [AU12_HEADER], 1),
        ("va", ["valence,arousal", "0.1"], 2),
    ],
)
def test_malformed_lines_name_the_line(
    tmp_path: Path, task: str, lines: list[str], line: int
) -> None:
    path = _file(tmp_path, "m.txt", *lines)
    with pytest.raises(ManifestError, match=rf"^{path} line {line}: expected "):
        read_annotation(path, task)  # type: ignore[arg-type]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_annotation(tmp_path / "none.txt", "expr")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ManifestError, match="is empty"):
        read_annotation(tmp_path / "empty.txt", "va")


def test_frame_index_at_30_fps() -> None:
    # frame k is shown from k/30 s to (k+1)/30 s
    times = [0.0, 0.05, 0.098, 0.0999, 0.1, 0.2, np.float32(1 / 3), 1.0]
    assert frame_indices(times, 30.0).tolist() == [0, 1, 2, 3, 3, 6, 10, 30]


def test_frame_index_at_25_fps() -> None:
    # frame k is shown from 0.04 k s to 0.04 (k+1) s
    times = [0.0, 0.038, 0.0395, 0.04, 0.5, 0.2, 1.0, 10.0]
    assert frame_indices(times, 25.0).tolist() == [0, 0, 1, 1, 12, 5, 25, 250]


@pytest.mark.parametrize("fps", [25.0, 30.0, 30000 / 1001])
def test_every_native_frame_time_stored_as_float32_maps_to_its_own_frame(fps: float) -> None:
    """An hour of frames: the store keeps timestamps as float32 (about 0.2 ms of rounding at
    the end), and each still maps to its frame."""
    frames = np.arange(int(3600 * fps))
    stored = (frames / fps).astype(np.float32)
    assert np.array_equal(frame_indices(stored, fps), frames)


def test_frame_indices_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="fps"):
        frame_indices([0.0], 0.0)
    with pytest.raises(ValueError, match="not negative"):
        frame_indices([-0.5], 30.0)


def test_labels_attached_to_frames_sampled_at_5_fps_from_a_25_fps_video(tmp_path: Path) -> None:
    lines = [EXPR8_HEADER, *[str(v) for v in (0, 0, 1, 1, 1, 2, 2, -1, 3, 3)]]
    labels = read_annotation(_file(tmp_path, "v.txt", *lines), "expr")
    sampled = labels_at_times(labels, [0.0, 0.2, 0.28, 0.36, 0.4], 25.0)
    # frames 0, 5, 7, 9 and 10 (past the ten annotated frames)
    assert sampled.values.tolist() == [0, 2, -1, 3, -1]
    assert sampled.mask.tolist() == [True, True, False, True, False]
    va = read_annotation(_file(tmp_path, "va.txt", "valence,arousal", "0.5,0.5", "-5,0.25"), "va")
    at = labels_at_times(va, [0.0, 1 / 30, 2 / 30], 30.0)
    assert at.mask.tolist() == [[True, True], [False, True], [False, False]]
    assert at.values[1, 1] == np.float32(0.25)


def test_written_files_read_back_unchanged(tmp_path: Path) -> None:
    expr = FrameLabels.from_values("expr", [4, -1, 0, 7])
    au = FrameLabels.from_values("au", np.array([[1] * 12, [-1] * 12, [0, 1] * 6]), names=ABAW_AU12)
    va_values = np.array([[0.1, -0.731], [np.nan, np.nan], [1.0, -1.0], [0.3333, -5]])
    va = FrameLabels.from_values("va", va_values)
    for labels in (expr, au, va):
        path = write_annotation(tmp_path / f"{labels.task}.txt", labels)
        back = read_annotation(path, labels.task)
        assert back.names == labels.names
        assert np.array_equal(back.mask, labels.mask)
        assert np.array_equal(back.values, labels.values, equal_nan=True)
        assert back.values.dtype == labels.values.dtype
    assert (tmp_path / "expr.txt").read_text() == f"{EXPR8_HEADER}\n4\n-1\n0\n7\n"
    assert (
        tmp_path / "va.txt"
    ).read_text() == "valence,arousal\n0.1,-0.731\n-5,-5\n1,-1\n0.3333,-5\n"
    assert (tmp_path / "au.txt").read_text().splitlines()[2] == ",".join(["-1"] * 12)


def test_a_prediction_file_has_a_header_and_one_line_per_frame() -> None:
    predicted = FrameLabels.from_values("expr", np.zeros(250, int), names=ABAW_EXPR7)
    text = format_annotation(predicted)
    assert text.count("\n") == 251 and text.startswith(EXPR7_HEADER + "\n0\n")
    assert format_annotation(FrameLabels.from_values("va", np.zeros((0, 2)))) == "valence,arousal\n"
    with pytest.raises(ValueError, match=r"0\.\.6"):
        FrameLabels.from_values("expr", [7], names=ABAW_EXPR7)


def _annotation_folder(root: Path) -> Path:
    ann = root / "annotations"
    _file(ann, "EXPR_Classification_Challenge/Train_Set/a.txt", EXPR8_HEADER, "1", "2")
    _file(ann, "EXPR_Classification_Challenge/Validation_Set/b_left.txt", EXPR8_HEADER, "0")
    _file(ann, "EXPR_Classification_Challenge/Train_Set/c.txt", EXPR8_HEADER, "0")
    _file(ann, "AU_Detection_Challenge/Validation_Set/a.txt", AU12_HEADER, ",".join("0" * 12))
    _file(ann, "AU_Detection_Challenge/Train_Set/b_left.txt", AU12_HEADER, "0,1")  # malformed
    _file(ann, "VA_Estimation_Challenge/Validation_Set/b_left.txt", "valence,arousal", "0,0")
    _file(ann, "VA_Estimation_Challenge/Validation_Set/b_right.txt", "valence,arousal", "-5,-5")
    _file(ann, "README.txt", "not an annotation")
    for name in ("a.mp4", "b.avi", "frames_a/00001.jpg"):
        (root / "videos" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "videos" / name).write_bytes(b"x")
    return ann


def test_annotation_files_are_found_by_task_and_split_folder(tmp_path: Path) -> None:
    ann = _annotation_folder(tmp_path)
    found = {(f.task, f.media_id): f.split for f in find_annotation_files(ann)}
    assert found == {
        ("expr", "a"): "train",
        ("expr", "b_left"): "val",
        ("expr", "c"): "train",
        ("au", "a"): "val",
        ("au", "b_left"): "train",
        ("va", "b_left"): "val",
        ("va", "b_right"): "val",
    }
    # a task folder given itself
    assert {f.media_id for f in find_annotation_files(ann / "VA_Estimation_Challenge")} == {
        "b_left",
        "b_right",
    }


def test_annotation_folder_as_a_manifest(tmp_path: Path) -> None:
    ann = _annotation_folder(tmp_path)
    assert DATASET_FORMATS.get("abaw").labels is None
    converted = convert_dataset("abaw", ann, tmp_path / "videos")
    table = converted.table.set_index("media_id")
    assert list(table.index) == ["a", "b_left", "b_right"]
    assert table.loc["a", "path"] == str(tmp_path / "videos" / "a.mp4")
    assert table.loc["b_left", "path"] == table.loc["b_right", "path"]  # one two-person video
    # a's tasks disagree on the split: no common split, each task keeps its own
    assert pd.isna(table.loc["a", "split"])
    assert (table.loc["a", "expr_split"], table.loc["a", "au_split"]) == ("train", "val")
    assert table.loc["b_left", "split"] == "val"
    # b_left's AU file is malformed: an issue, and no AU column for it
    assert pd.isna(table.loc["b_left", "au"]) and table.loc["b_left", "va"].endswith("b_left.txt")
    issues = {Path(i.where).name: i.message for i in converted.issues}
    assert set(issues) == {"b_left.txt", "c.txt"}
    assert issues["b_left.txt"].startswith("line 2: expected 12 comma-separated values")
    assert issues["b_left.txt"].endswith("; this au annotation is left out")
    assert "no video named 'c'" in issues["c.txt"] and "--media" in issues["c.txt"]
    manifest = converted.save(tmp_path / "abaw.csv")
    valid, problems = load_manifest(manifest)
    assert problems == [] and len(valid) == 3
    assert read_annotation(
        valid.set_index("media_id").loc["a", "expr"], "expr"
    ).values.tolist() == [1, 2]


def test_a_folder_without_annotations_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ManifestError, match="holds no ABAW annotation files"):
        convert_dataset("abaw", tmp_path)


@pytest.mark.parametrize("native_fps", [25.0, 30.0])
def test_labels_follow_the_frames_raypipe_decodes(tmp_path: Path, native_fps: float) -> None:
    """A clip whose frame k has the EXPR label k % 8: frames sampled at 5 fps by raypipe's
    decoder get the labels of the native frames it decoded (by the probed frame rate)."""
    from raypipe.media.probe import probe
    from raypipe.media.video import decode_frames
    from raypipe.media.writer import write_clip

    count = int(2 * native_fps)
    frames = np.zeros((count, 48, 64, 3), np.uint8)
    path = tmp_path / "clip.mp4"
    write_clip(path, frames, native_fps)
    info = probe(path)
    sampled = decode_frames(info, fps=5.0, max_side=64)
    lines = [EXPR8_HEADER, *[str(k % 8) for k in range(count)]]
    labels = read_annotation(_file(tmp_path, "clip.txt", *lines), "expr")
    at = labels_at_times(labels, sampled.timestamps_s, info.fps)
    step = int(native_fps / 5)
    assert sampled.source_indices.tolist() == list(range(0, count, step))
    assert frame_indices(sampled.timestamps_s, info.fps).tolist() == sampled.source_indices.tolist()
    assert at.values.tolist() == [k % 8 for k in range(0, count, step)] and at.mask.all()
