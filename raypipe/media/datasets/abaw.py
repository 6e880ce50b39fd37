"""Aff-Wild2 / ABAW annotation files: per-frame expression (EXPR), action-unit (AU) and
valence/arousal (VA) labels, read with their masks, attached to sampled frames by timestamp,
and written back in the same format (a submission is one such file per video).

The format: one text file per video (``<video>.txt``; ``<video>_left.txt`` and
``<video>_right.txt`` for the two people of a two-person video) and task, a header line, then
one line per video frame, frame 0 first:

- EXPR: one class index (-1: unlabelled); the header names the classes (7 in ABAW 2020 and
  ABAW2, 8 with ``Other`` from ABAW3 on);
- AU: one 0/1 column per action unit (-1: unlabelled); the header names the units (12 from
  ABAW2 on, 8 in ABAW 2020);
- VA: ``valence,arousal`` in [-1, 1] (-5: unlabelled).

The annotation folder (``<task folder>/<split folder>/<video>.txt``, task folders such as
``EXPR_Set`` or ``EXPR_Classification_Challenge``) becomes a manifest of the videos, with the
annotation file of each task in a column of its own (registered as dataset format ``abaw``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import pandas as pd

from raypipe.errors import ManifestError
from raypipe.labels import ABAW_AU12, ABAW_EXPR8, LabelSpace, label_space
from raypipe.media.datasets.registry import ConvertedDataset, DatasetIssue, register_format
from raypipe.media.manifest import name_words, split_in_name

AbawTask = Literal["expr", "au", "va"]
#: The tasks, in the order of their manifest columns.
TASKS: tuple[AbawTask, ...] = ("expr", "au", "va")
#: The value of an unlabelled frame (EXPR) or cell (AU, VA) in the files, by task.
UNLABELLED: dict[str, int] = {"expr": -1, "au": -1, "va": -5}
#: Column names of the VA task, in file order.
VA_NAMES: tuple[str, str] = ("valence", "arousal")
#: A timestamp this close before a frame's start (seconds) counts as that frame: stored
#: timestamps are float32 (about 0.2 ms of rounding an hour into a video).
TIME_TOLERANCE_S = 1e-3
#: Suffixes of the videos an annotation file may belong to.
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}
#: Suffix of an annotation file naming one of the two people of a two-person video.
_PERSON = re.compile(r"_(left|right)$", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class FrameLabels:
    """One video's labels for one task, one row per video frame (frame 0 first).

    Attributes:
        task: 'expr', 'au' or 'va'.
        names: the header's names: classes (expr; a class index is a position here), action
            units (au; one column each) or ('valence', 'arousal') (va).
        values: expr (N,) int64 class indices; au (N, K) int8 0/1; va (N, 2) float32 in
            [-1, 1]. Unlabelled entries hold -1 (expr, au) or NaN (va).
        mask: bool, the shape of ``values``; True where the entry is labelled.
    """

    task: AbawTask
    names: tuple[str, ...]
    values: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task '{self.task}' is not one of {', '.join(TASKS)}")
        if self.mask.shape != self.values.shape or self.mask.dtype != np.bool_:
            raise ValueError(
                f"mask must be a bool array of the values' shape {self.values.shape}, "
                f"got {self.mask.dtype} {self.mask.shape}"
            )
        width = None if self.task == "expr" else len(self.names)
        expected = 1 if width is None else 2
        if self.values.ndim != expected or (width is not None and self.values.shape[1] != width):
            shape = "(frames,)" if width is None else f"(frames, {width})"
            raise ValueError(
                f"{self.task} values must have shape {shape} for names {list(self.names)}, "
                f"got {self.values.shape}"
            )
        labelled = self.values[self.mask]
        if self.task == "expr" and ((labelled < 0) | (labelled >= len(self.names))).any():
            raise ValueError(
                f"expr class indices must lie in 0..{len(self.names) - 1} ({len(self.names)} "
                "classes) where labelled"
            )
        if self.task == "au" and not np.isin(labelled, (0, 1)).all():
            raise ValueError("au values must be 0 or 1 where labelled")
        if self.task == "va" and not (np.isfinite(labelled) & (np.abs(labelled) <= 1)).all():
            raise ValueError("va values must lie in [-1, 1] where labelled")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def from_values(
        cls,
        task: AbawTask,
        values: np.ndarray | Sequence,
        mask: np.ndarray | None = None,
        names: Sequence[str] | None = None,
    ) -> FrameLabels:
        """Labels (or predictions) from plain arrays: ``values`` as in the files (expr
        indices, au 0/1, va floats; the unlabelled value -1 / -1 / -5, or NaN for va, where
        ``mask`` is not given), ``names`` by default the ABAW3+ ones (8 classes, 12 AUs)."""
        if task not in TASKS:
            raise ValueError(f"task '{task}' is not one of {', '.join(TASKS)}")
        default = {"expr": ABAW_EXPR8, "au": ABAW_AU12, "va": VA_NAMES}[task]
        names = tuple(names) if names is not None else default
        raw = np.asarray(values, dtype=np.float64)
        if task == "va" and raw.ndim == 2:
            found = ~(np.isnan(raw) | (raw == UNLABELLED["va"]))
        else:
            found = raw != UNLABELLED[task]
        mask = found if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != raw.shape:
            raise ValueError(f"mask shape {mask.shape} differs from values shape {raw.shape}")
        if task == "va":
            array = np.where(mask, raw, np.nan).astype(np.float32)
        else:
            if not np.array_equal(raw[mask], np.round(raw[mask])):
                raise ValueError(f"{task} values must be whole numbers where labelled")
            fill = UNLABELLED[task]
            dtype = np.int64 if task == "expr" else np.int8
            array = np.where(mask, np.nan_to_num(raw, nan=fill), fill).astype(dtype)
        return cls(task, names, array, mask)

    def label_space(self) -> LabelSpace:
        """The classes (expr) or action units (au) as a label space; for the ABAW names the
        registered one (``abaw_expr``, ``abaw2020_expr``, ``abaw_au``, ``abaw2020_au``)."""
        return label_space(self.names)


def read_annotation(path: Path | str, task: AbawTask) -> FrameLabels:
    """Read one ABAW annotation file of ``task`` ('expr', 'au' or 'va').

    Raises:
        ManifestError: the file is missing, empty, or a line is malformed; the message names
            the file and the line (1 = the header, 2 = frame 0) and says what was expected.
    """
    if task not in TASKS:
        raise ValueError(f"task '{task}' is not one of {', '.join(TASKS)}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"Annotation file '{path}' does not exist; check the path.") from None
    except UnicodeDecodeError:
        raise ManifestError(
            f"Annotation file '{path}' is not text; give an ABAW annotation .txt file."
        ) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ManifestError(
            f"Annotation file '{path}' is empty; an ABAW annotation file holds a header line, "
            "then one line per video frame."
        )
    names = _header(path, lines[0], task)
    rows = lines[1:]
    if task == "expr":
        values, mask = _expr_rows(path, rows, len(names))
    elif task == "au":
        values, mask = _au_rows(path, rows, len(names))
    else:
        values, mask = _va_rows(path, rows)
    return FrameLabels(task, names, values, mask)


def _bad_line(path: Path, number: int, line: str, expected: str) -> ManifestError:
    shown = line if len(line) <= 60 else line[:57] + "..."
    return ManifestError(
        f"{path} line {number}: expected {expected}, found '{shown}'; fix the line (every line "
        "after the header holds one video frame's labels)."
    )


def _header(path: Path, line: str, task: AbawTask) -> tuple[str, ...]:
    names = tuple(n.strip() for n in line.strip().rstrip(",").split(","))
    numeric = all(re.fullmatch(r"-?\d+(\.\d*)?", n) for n in names)
    if task == "expr":
        if numeric or len(names) < 2 or not all(names):
            raise _bad_line(
                path, 1, line, "a header line naming the classes (e.g. Neutral,Anger,...)"
            )
        return names
    if task == "au":
        if not all(re.fullmatch(r"(?i)AU\d+", n) for n in names) or len(set(names)) != len(names):
            raise _bad_line(
                path, 1, line, "a header line naming the action units (e.g. AU1,AU2,...)"
            )
        return tuple(n.upper() for n in names)
    if tuple(n.lower() for n in names) != VA_NAMES:
        raise _bad_line(path, 1, line, "the header line 'valence,arousal'")
    return VA_NAMES


def _expr_rows(path: Path, rows: list[str], classes: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.empty(len(rows), np.int64)
    expected = f"one class index 0..{classes - 1} (or -1: unlabelled)"
    for i, line in enumerate(rows):
        token = line.strip()
        try:
            value = int(token)
        except ValueError:
            raise _bad_line(path, i + 2, line, expected) from None
        if not -1 <= value < classes:
            raise _bad_line(path, i + 2, line, expected)
        values[i] = value
    return values, values >= 0


def _au_rows(path: Path, rows: list[str], units: int) -> tuple[np.ndarray, np.ndarray]:
    values = np.empty((len(rows), units), np.int8)
    expected = f"{units} comma-separated values 0, 1 or -1 (one per action unit)"
    allowed = {"0": 0, "1": 1, "-1": -1}
    for i, line in enumerate(rows):
        tokens = [t.strip() for t in line.strip().rstrip(",").split(",")]
        if len(tokens) != units or not all(t in allowed for t in tokens):
            raise _bad_line(path, i + 2, line, expected)
        values[i] = [allowed[t] for t in tokens]
    return values, values >= 0


def _va_rows(path: Path, rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
    values = np.empty((len(rows), 2), np.float32)
    mask = np.empty((len(rows), 2), bool)
    expected = "'valence,arousal', each in [-1, 1] (or -5: unlabelled)"
    for i, line in enumerate(rows):
        tokens = line.strip().rstrip(",").split(",")
        try:
            pair = [float(t) for t in tokens]
        except ValueError:
            raise _bad_line(path, i + 2, line, expected) from None
        if len(pair) != 2:
            raise _bad_line(path, i + 2, line, expected)
        for j, value in enumerate(pair):
            if value == UNLABELLED["va"]:
                values[i, j], mask[i, j] = np.nan, False
            elif np.isfinite(value) and -1.0 <= value <= 1.0:
                values[i, j], mask[i, j] = value, True
            else:
                raise _bad_line(path, i + 2, line, expected)
    return values, mask


def frame_indices(timestamps_s: np.ndarray | Sequence[float], fps: float) -> np.ndarray:
    """The index (0-based) of the native video frame shown at each timestamp: frame ``k`` is
    shown from ``k / fps`` to ``(k + 1) / fps`` seconds, so the index is ``floor(t * fps)``,
    a time within :data:`TIME_TOLERANCE_S` before a frame's start counting as that frame.

    Args:
        timestamps_s: (N,) presentation times of sampled frames, seconds from the start.
        fps: the video's native frame rate, Hz (frames per second).
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive frame rate in Hz, got {fps}")
    times = np.asarray(timestamps_s, dtype=np.float64)
    if times.ndim != 1:
        raise ValueError(f"timestamps_s must be one-dimensional, got shape {times.shape}")
    if not np.isfinite(times).all() or (times < -TIME_TOLERANCE_S).any():
        raise ValueError("timestamps_s must be finite times in seconds, not negative")
    return np.maximum(np.floor((times + TIME_TOLERANCE_S) * fps), 0).astype(np.int64)


def labels_at_times(
    labels: FrameLabels, timestamps_s: np.ndarray | Sequence[float], fps: float
) -> FrameLabels:
    """The labels of the frames sampled at ``timestamps_s`` (seconds) from a video of native
    frame rate ``fps`` (Hz): one row per timestamp, from the annotation line of the frame
    shown at that time (:func:`frame_indices`). Times past the last annotated frame are
    unlabelled (mask False)."""
    index = frame_indices(timestamps_s, fps)
    inside = index < len(labels)
    shape = (len(index), *labels.values.shape[1:])
    fill = np.nan if labels.task == "va" else UNLABELLED[labels.task]
    values = np.full(shape, fill, dtype=labels.values.dtype)
    mask = np.zeros(shape, dtype=bool)
    values[inside] = labels.values[index[inside]]
    mask[inside] = labels.mask[index[inside]]
    return FrameLabels(labels.task, labels.names, values, mask)


def fill_native_frames(
    frame_index: np.ndarray | Sequence[int], values: np.ndarray, n_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame values for every native frame ``0..n_frames-1`` of a video from values at
    some of its frames: rows that fall on the same frame are averaged, and a frame without a
    value of its own takes that of the nearest frame with one (in time; the earlier on a
    tie). Rows past the last frame are dropped.

    Args:
        frame_index: (M,) native frame index of each row (:func:`frame_indices`).
        values: (M,) or (M, K) values (class probabilities, AU probabilities, VA values).
        n_frames: the video's frame count (its annotation file's lines after the header).

    Returns:
        ``(filled, own)``: (n_frames, ...) values and (n_frames,) bool, True where the frame
        had a value of its own (False: filled from a neighbour).

    Raises:
        ValueError: no row falls inside the video.
    """
    index = np.asarray(frame_index, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    inside = (index >= 0) & (index < n_frames)
    index, values = index[inside], values[inside]
    if len(index) == 0:
        raise ValueError(f"no value falls on one of the video's {n_frames} frames")
    frames = np.unique(index)
    sums = np.zeros((len(frames), *values.shape[1:]))
    np.add.at(sums, np.searchsorted(frames, index), values)
    counts = np.bincount(np.searchsorted(frames, index), minlength=len(frames))
    means = sums / counts.reshape(-1, *([1] * (values.ndim - 1)))
    every = np.arange(n_frames)
    after = np.clip(np.searchsorted(frames, every), 0, len(frames) - 1)
    before = np.clip(after - 1, 0, len(frames) - 1)
    take_before = np.abs(every - frames[before]) <= np.abs(frames[after] - every)
    nearest = np.where(take_before, before, after)
    own = np.zeros(n_frames, dtype=bool)
    own[frames] = True
    return means[nearest], own


def format_annotation(labels: FrameLabels) -> str:
    """The file text of ``labels``: the header line, then one line per frame (unlabelled
    entries written as -1, or -5 for VA), each line ending in a newline."""
    if labels.task == "va":
        text = np.array([_float(v) for v in labels.values.ravel()], dtype=object)
    else:
        text = labels.values.ravel().astype(str).astype(object)
    cells = np.where(labels.mask.ravel(), text, str(UNLABELLED[labels.task]))
    cells = cells.reshape(len(labels), 1 if labels.task == "expr" else len(labels.names))
    lines = [",".join(labels.names), *(",".join(row) for row in cells.tolist())]
    return "\n".join(lines) + "\n"


def _float(value: np.float32) -> str:
    # The shortest text that reads back as the same float32 (0.1, not 0.10000000149).
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def write_annotation(path: Path | str, labels: FrameLabels) -> Path:
    """Write ``labels`` as an ABAW annotation (or submission) file at ``path``, atomically (a
    temporary file renamed into place); :func:`read_annotation` reads it back unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(format_annotation(labels), encoding="utf-8")
    os.replace(temporary, path)
    return path


@dataclass(frozen=True)
class AnnotationFile:
    """One annotation file of an ABAW annotation folder.

    Attributes:
        media_id: the file's stem: the video's name, with ``_left`` / ``_right`` for one of
            the two people of a two-person video.
        task: 'expr', 'au' or 'va', from the task folder's name.
        split: 'train', 'val' or 'test' from the split folder's name, or None.
        path: the file.
    """

    media_id: str
    task: AbawTask
    split: str | None
    path: Path


def task_of_folder(name: str) -> AbawTask | None:
    """The task a folder holds by its name (EXPR_Set, Expression_Set,
    EXPR_Classification_Challenge -> 'expr'; AU_Set, AU_Detection_Challenge -> 'au';
    VA_Set, VA_Estimation_Challenge -> 'va'), or None."""
    words = name_words(name)
    if "expr" in words or "expression" in words:
        return "expr"
    if "au" in words:
        return "au"
    if "va" in words:
        return "va"
    return None


def find_annotation_files(root: Path | str) -> list[AnnotationFile]:
    """Every annotation file under ``root``: ``.txt`` files below a task folder (``root``
    itself may be one), their split from a folder between the two; in path order."""
    root = Path(root)
    found = []
    for path in sorted(root.rglob("*.txt")):
        folders = (root.name, *path.relative_to(root).parts[:-1])
        tasks = [(i, task_of_folder(f)) for i, f in enumerate(folders)]
        tasks = [(i, t) for i, t in tasks if t is not None]
        if not tasks:
            continue
        at, task = tasks[-1]
        splits = [s for s in map(split_in_name, folders[at + 1 :]) if s]
        found.append(
            AnnotationFile(path.stem, cast(AbawTask, task), splits[-1] if splits else None, path)
        )
    return found


def _video_index(root: Path) -> dict[str, list[Path]]:
    """Videos under ``root`` by stem (``os.walk``: an Aff-Wild2 folder may also hold millions
    of cropped frames, which are skipped by suffix without a stat each)."""
    videos: dict[str, list[Path]] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in VIDEO_SUFFIXES and not name.startswith("."):
                videos.setdefault(stem, []).append(Path(folder, name))
    return {stem: sorted(paths) for stem, paths in videos.items()}


@register_format(
    "abaw",
    labels=None,
    description="Aff-Wild2 / ABAW annotation folders (EXPR, AU, VA: one text file per video "
    "and task) beside their videos",
)
def abaw_manifest(source: Path, media: Path | None = None) -> ConvertedDataset:
    """A manifest of the annotated videos under ``source`` (their videos found by name under
    ``media``, default ``source``): one row per annotated person (``media_id`` = the
    annotation file's stem), columns ``media_id, path, split`` (the split when every task
    agrees, else empty), then per task ``<task>`` (its annotation file) and ``<task>_split``.

    Every annotation file is read once, so a malformed one is found here: it becomes an
    issue and its column stays empty. An annotation without a video is an issue too.
    """
    files = find_annotation_files(source)
    if not files:
        raise ManifestError(
            f"'{source}' holds no ABAW annotation files; expected <task folder>/<split "
            "folder>/<video>.txt with task folders named like EXPR_Set, AU_Set, VA_Set (or "
            "EXPR_Classification_Challenge, AU_Detection_Challenge, VA_Estimation_Challenge)."
        )
    videos = _video_index(media or source)
    issues: list[DatasetIssue] = []
    by_media: dict[str, dict[str, AnnotationFile]] = {}
    for annotation in files:
        tasks = by_media.setdefault(annotation.media_id, {})
        if annotation.task in tasks:
            issues.append(
                DatasetIssue(
                    str(annotation.path),
                    f"a second {annotation.task} annotation of '{annotation.media_id}' (the "
                    f"first is {tasks[annotation.task].path}); it is left out, remove one",
                )
            )
            continue
        try:
            read_annotation(annotation.path, annotation.task)
        except ManifestError as exc:
            problem = str(exc).removeprefix(f"{annotation.path} ").rstrip(".")
            message = f"{problem}; this {annotation.task} annotation is left out"
            issues.append(DatasetIssue(str(annotation.path), message))
            continue
        tasks[annotation.task] = annotation
    rows = []
    for media_id, tasks in sorted(by_media.items()):
        if not tasks:
            continue
        candidates = videos.get(media_id) or videos.get(_PERSON.sub("", media_id)) or []
        if not candidates:
            where = next(iter(tasks.values())).path
            issues.append(
                DatasetIssue(
                    str(where),
                    f"no video named '{_PERSON.sub('', media_id)}' "
                    f"({', '.join(sorted(VIDEO_SUFFIXES))}) under '{media or source}'; its "
                    "annotations are left out (give the videos' folder with --media)",
                )
            )
            continue
        if len(candidates) > 1:
            issues.append(
                DatasetIssue(
                    media_id,
                    f"{len(candidates)} videos match ({', '.join(map(str, candidates))}); the "
                    "first is used, give the right folder with --media",
                )
            )
        splits = {t.split for t in tasks.values() if t.split}
        row: dict[str, str | None] = {
            "media_id": media_id,
            "path": str(candidates[0]),
            "split": splits.pop() if len(splits) == 1 else None,
        }
        for task in TASKS:
            annotation = tasks.get(task)
            row[task] = str(annotation.path) if annotation else None
            row[f"{task}_split"] = annotation.split if annotation else None
        rows.append(row)
    columns = ["media_id", "path", "split", *[c for t in TASKS for c in (t, f"{t}_split")]]
    return ConvertedDataset("abaw", pd.DataFrame(rows, columns=columns), None, issues)
