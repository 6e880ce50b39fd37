"""A small, deterministic Aff-Wild2-shaped demo set for ``raypipe demo --task frames``.

Each video shows the real face of :mod:`raypipe.media.demo_set` (``skimage.data.astronaut()``)
over a tinted background. Its expression changes over time in **segments** (0.8 to 2 seconds
each) of one ABAW class (:data:`~raypipe.labels.ABAW_EXPR8`); every class changes how the face
looks (darker or brighter, tilted one way or the other, blurred), and the segment sets the
expression (EXPR), the action units (AU, a per-class prototype with a few units flipped per
segment) and valence/arousal (VA, a per-class centre plus a per-segment offset, eased across
segment boundaries over 0.2 seconds).

The temporal signal is planted: the cue's strength is drawn anew for every video frame (from
15% to 100% of the segment's), and a quarter of the frames show another class's cue. One frame
is therefore an unreliable witness of its segment, while a few neighbouring frames agree, so
smoothing predictions over time, or a sequence model, beats per-frame classification.

As in Aff-Wild2, some frames are unlabelled (a stretch per video and task: EXPR and AU -1, VA
-5) and some stretches show no face (the face leaves the frame; those frames keep their
segment's labels, so a prediction for them has to come from their neighbours).

The annotation folder is written with :func:`~raypipe.media.datasets.abaw.write_annotation`:
``annotations/{EXPR_Set,AU_Set,VA_Set}/{Train_Set,Validation_Set,Test_Set}/<video>.txt``, a
header line then one line per native video frame. The manifest is the ``abaw`` dataset
format's (:func:`~raypipe.media.datasets.abaw.abaw_manifest`): ``media_id, path, split`` and
the annotation file of each task. ``segments.csv`` records the plan (the truth the labels were
drawn from): one row per segment and per no-face stretch.

The output is byte-for-byte reproducible for a seed: every video draws from its own random
generator, seeded by ``(seed, video)``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from raypipe.labels import ABAW_AU12, ABAW_EXPR8
from raypipe.media.datasets.abaw import VA_NAMES, FrameLabels, abaw_manifest, write_annotation
from raypipe.media.demo_set import _face_patch, _FaceCue, _paste, _resize_bilinear
from raypipe.media.writer import video_codec, write_clip

log = logging.getLogger(__name__)

#: Action units active in each expression class (ABAW_EXPR8 order), by name.
AU_PROTOTYPES: tuple[tuple[str, ...], ...] = (
    (),  # Neutral
    ("AU4", "AU7", "AU23", "AU24"),  # Anger
    ("AU4", "AU10", "AU15"),  # Disgust
    ("AU1", "AU2", "AU4", "AU25"),  # Fear
    ("AU6", "AU12", "AU25"),  # Happiness
    ("AU1", "AU4", "AU15"),  # Sadness
    ("AU1", "AU2", "AU25", "AU26"),  # Surprise
    ("AU7", "AU10"),  # Other
)
#: (valence, arousal) centre of each expression class (ABAW_EXPR8 order), in [-1, 1].
VA_CENTRES: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (-0.7, 0.7),
    (-0.6, 0.3),
    (-0.5, 0.8),
    (0.8, 0.5),
    (-0.7, -0.4),
    (0.3, 0.8),
    (0.2, -0.3),
)
#: The face change of each class: (gamma direction: +1 darker, -1 brighter, 0 none; rotation
#: direction: +1 anticlockwise, -1 clockwise, 0 none; blurred), ABAW_EXPR8 order.
FACE_CUES: tuple[tuple[int, int, bool], ...] = (
    (0, 0, False),  # Neutral: unchanged
    (1, -1, False),  # Anger: darker, clockwise
    (1, 1, False),  # Disgust: darker, anticlockwise
    (-1, -1, False),  # Fear: brighter, clockwise
    (-1, 1, False),  # Happiness: brighter, anticlockwise
    (0, 0, True),  # Sadness: blurred, low contrast
    (1, 0, False),  # Surprise: darker
    (-1, 0, False),  # Other: brighter
)
#: Segment length range, seconds.
SEGMENT_S: tuple[float, float] = (0.8, 2.0)
#: Fraction of video frames that show another class's cue (per-frame noise).
DISTRACTOR_RATE = 0.25
#: Range of a frame's cue strength, as a fraction of its segment's strength.
FRAME_STRENGTH: tuple[float, float] = (0.15, 1.0)
#: Probability that an action unit of a segment differs from its class prototype.
AU_FLIP_RATE = 0.08
#: Fraction of videos with a stretch without a face.
NO_FACE_RATE = 0.5

_SPLIT_FOLDERS = {"train": "Train_Set", "val": "Validation_Set", "test": "Test_Set"}
_TASK_FOLDERS = {"expr": "EXPR_Set", "au": "AU_Set", "va": "VA_Set"}
_SPLIT_NAMES = ("train", "val", "test")
# Cue strengths are quantised to this many levels, so face patches are computed once each.
_LEVELS = 8


@dataclass(frozen=True)
class Segment:
    """A stretch of video frames ``[start, stop)`` (native frame indices) of one class."""

    start: int
    stop: int
    expr: int
    strength: float


@dataclass(frozen=True, eq=False)
class VideoPlan:
    """Everything drawn for one video before it is rendered, one row per native frame.

    Attributes:
        media_id: the video's id.
        split: 'train', 'val' or 'test'.
        fps: native frame rate, Hz.
        segments: the expression segments, covering every frame in order.
        shown: (N,) class whose cue each frame shows (its segment's, or a distractor's).
        strength: (N,) cue strength of each frame, in [0, 1].
        face: (N,) bool, True where the face is drawn.
        expr, au, va: the labels written to the annotation files (unlabelled entries masked).
    """

    media_id: str
    split: str
    fps: float
    segments: tuple[Segment, ...]
    shown: np.ndarray
    strength: np.ndarray
    face: np.ndarray
    expr: FrameLabels
    au: FrameLabels
    va: FrameLabels


def segment_labels(plan: VideoPlan) -> np.ndarray:
    """(N,) the expression class of every frame's segment (the truth before masking)."""
    out = np.empty(len(plan.shown), np.int64)
    for segment in plan.segments:
        out[segment.start : segment.stop] = segment.expr
    return out


def _stretch(rng: np.random.Generator, n_frames: int, fps: float, seconds: tuple[float, float]):
    length = min(n_frames, max(1, round(rng.uniform(*seconds) * fps)))
    start = int(rng.integers(0, n_frames - length + 1))
    return start, start + length


def plan_video(
    media_id: str, split: str, n_frames: int, fps: float, rng: np.random.Generator
) -> VideoPlan:
    """Draw one video's segments, per-frame cues, face stretches and labels.

    Args:
        media_id: the video's id.
        split: its split.
        n_frames: native frames in the video.
        fps: native frame rate, Hz.
        rng: the video's random generator.
    """
    classes = len(ABAW_EXPR8)
    segments: list[Segment] = []
    start, previous = 0, -1
    while start < n_frames:
        length = max(1, round(rng.uniform(*SEGMENT_S) * fps))
        expr = int(rng.integers(classes - 1))
        expr = expr if expr < previous or previous < 0 else expr + 1  # never the previous class
        stop = min(n_frames, start + length)
        segments.append(Segment(start, stop, expr, float(rng.uniform(0.6, 1.0))))
        start, previous = stop, expr
    truth = np.empty(n_frames, np.int64)
    seg_strength = np.empty(n_frames)
    au = np.empty((n_frames, len(ABAW_AU12)), np.int8)
    va = np.empty((n_frames, 2))
    for segment in segments:
        frames = slice(segment.start, segment.stop)
        truth[frames], seg_strength[frames] = segment.expr, segment.strength
        units = np.isin(ABAW_AU12, AU_PROTOTYPES[segment.expr])
        units ^= rng.random(len(ABAW_AU12)) < AU_FLIP_RATE
        au[frames] = units.astype(np.int8)
        va[frames] = np.asarray(VA_CENTRES[segment.expr]) + rng.normal(0.0, 0.1, 2)
    # Annotators move the VA stick smoothly: ease across boundaries (0.2 s moving average).
    width = max(1, round(0.2 * fps))
    kernel = np.ones(width) / width
    padded = np.pad(va, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    va = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(2)], axis=1)
    va = np.clip(np.round(va, 3), -1.0, 1.0)

    shown = truth.copy()
    distract = rng.random(n_frames) < DISTRACTOR_RATE
    other = rng.integers(classes - 1, size=n_frames)
    shown[distract] = np.where(other >= truth, other + 1, other)[distract]
    strength = seg_strength * rng.uniform(*FRAME_STRENGTH, size=n_frames)
    face = np.ones(n_frames, bool)
    if rng.random() < NO_FACE_RATE:
        lo, hi = _stretch(rng, n_frames, fps, (0.6, 1.2))
        face[lo:hi] = False

    expr_mask = np.ones(n_frames, bool)
    au_mask = np.ones(au.shape, bool)
    va_mask = np.ones(va.shape, bool)
    lo, hi = _stretch(rng, n_frames, fps, (0.3, 0.8))
    expr_mask[lo:hi] = False
    lo, hi = _stretch(rng, n_frames, fps, (0.3, 0.8))
    au_mask[lo:hi] = False
    lo, hi = _stretch(rng, n_frames, fps, (0.3, 0.8))
    va_mask[lo:hi] = False
    return VideoPlan(
        media_id=media_id,
        split=split,
        fps=fps,
        segments=tuple(segments),
        shown=shown,
        strength=strength,
        face=face,
        expr=FrameLabels.from_values("expr", truth, expr_mask),
        au=FrameLabels.from_values("au", au, au_mask),
        va=FrameLabels.from_values("va", va, va_mask, names=VA_NAMES),
    )


def face_cue(expr: int, strength: float) -> _FaceCue:
    """The face change of class ``expr`` at ``strength`` (0: none, 1: full)."""
    gamma_dir, rotation_dir, blurred = FACE_CUES[expr]
    gamma = 1.0 + 0.9 * strength if gamma_dir > 0 else 1.0 - 0.45 * strength
    if gamma_dir == 0:
        gamma = 1.0
    if blurred:
        return _FaceCue(gamma, 1.0 - 0.45 * strength, 2.5 * strength, 0.0)
    return _FaceCue(gamma, 1.0, 0.0, 15.0 * rotation_dir * strength)


@lru_cache(maxsize=_LEVELS * len(ABAW_EXPR8) * 2)
def _patch(expr: int, level: int, scale: float) -> np.ndarray:
    patch = _face_patch(face_cue(expr, level / (_LEVELS - 1)), scale)
    patch.setflags(write=False)
    return patch


def _render_video(
    plan: VideoPlan, frame_size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 RGB of one planned video."""
    height, width = frame_size
    unit = min(height / 240.0, width / 320.0)  # pixels per pixel of a 240x320 frame
    scale = 1.05 * unit
    tint = rng.uniform(0.2, 0.8, size=3).astype(np.float32)
    shade = np.linspace(0.85, 1.15, height, dtype=np.float32)[:, None, None]
    background = np.clip(np.broadcast_to(tint * shade, (height, width, 3)), 0.0, 1.0)
    start = rng.uniform(-1.0, 1.0, size=2) * np.array([8.0, 12.0]) * unit
    drift = rng.uniform(-1.0, 1.0, size=2) * np.array([6.0, 10.0]) * unit
    n_frames = len(plan.shown)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for index in range(n_frames):
        frame = background.copy()
        if plan.face[index]:
            level = round(float(plan.strength[index]) * (_LEVELS - 1))
            patch = _patch(int(plan.shown[index]), level, 1.0)
            zoom = scale * (1.0 + 0.03 * math.sin(2 * math.pi * index / (3.0 * plan.fps)))
            size = (max(2, round(patch.shape[0] * zoom)), max(2, round(patch.shape[1] * zoom)))
            layer = _resize_bilinear(patch, *size)
            progress = index / max(n_frames - 1, 1)
            centre = np.array([height / 2.0, width / 2.0]) + start + drift * progress
            _paste(frame, layer, round(centre[0] - size[0] / 2), round(centre[1] - size[1] / 2))
        frame *= 255.0
        frame += rng.standard_normal(size=frame.shape, dtype=np.float32) * 3.0
        frames[index] = np.clip(np.rint(frame), 0.0, 255.0).astype(np.uint8)
    return frames


def _split_counts(n: int, splits: tuple[float, float, float]) -> tuple[int, int, int]:
    n_train = math.floor(n * splits[0] + 0.5)
    n_val = min(n - n_train, math.floor(n * splits[1] + 0.5))
    return n_train, n_val, n - n_train - n_val


def _write_segments(path: Path, plans: list[VideoPlan]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("media_id", "split", "kind", "start_frame", "stop_frame", "expr"))
        for plan in plans:
            for segment in plan.segments:
                row = ("segment", segment.start, segment.stop, ABAW_EXPR8[segment.expr])
                writer.writerow((plan.media_id, plan.split, *row))
            missing = np.flatnonzero(~plan.face)
            if missing.size:
                row = ("no_face", int(missing[0]), int(missing[-1]) + 1, "")
                writer.writerow((plan.media_id, plan.split, *row))
    os.replace(temporary, path)


def make_frames_demo_dataset(
    out_dir: Path,
    videos: int = 24,
    seed: int = 0,
    duration_s: float = 6.0,
    fps: float = 25.0,
    frame_size: tuple[int, int] = (144, 192),
    splits: tuple[float, float, float] = (0.5, 0.25, 0.25),
) -> Path:
    """Write the frame-level demo set under ``out_dir`` and return its manifest's path.

    Writes ``out_dir/media/<media_id>.mp4`` (no audio), the annotation folder
    ``out_dir/annotations/`` (EXPR, AU and VA per video and split), ``out_dir/segments.csv``
    (the plan) and ``out_dir/manifest.csv``.

    Args:
        out_dir: Output folder (created if missing); existing files are overwritten.
        videos: Number of videos.
        seed: Random seed; the same seed gives byte-identical annotations and decoded videos.
        duration_s: Video length, seconds.
        fps: Native frame rate, frames per second (``round(duration_s * fps)`` frames).
        frame_size: ``(height, width)`` in pixels (even numbers, at least 96 x 128 so that
            the face is large enough to detect).
        splits: Fractions of the videos in train, val and test (rounded; test takes the rest).

    Returns:
        The manifest (``abaw`` dataset format): ``media_id, path, split`` with ``path``
        relative to its folder, then per task the annotation file (``expr``, ``au``, ``va``)
        and its split folder's split (``expr_split``...).
    """
    if videos < 3:
        raise ValueError(f"videos must be at least 3 (one per split), got {videos}")
    if duration_s <= 0 or fps <= 0:
        raise ValueError(f"duration_s and fps must be positive, got {duration_s} and {fps}")
    if (
        len(frame_size) != 2
        or frame_size[0] < 96
        or frame_size[1] < 128
        or any(v % 2 for v in frame_size)
    ):
        raise ValueError(f"frame_size must be (height, width), even, >= (96, 128): {frame_size}")
    if len(splits) != 3 or min(splits) < 0 or abs(sum(splits) - 1.0) > 1e-6:
        raise ValueError(f"splits must be three non-negative fractions summing to 1, got {splits}")
    out_dir = Path(out_dir)
    media_dir = out_dir / "media"
    annotations = out_dir / "annotations"
    media_dir.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, round(duration_s * fps))
    log.info(
        "frames demo: writing %d videos (%.1f s, %d frames of %dx%d at %g fps, %s) to %s",
        videos,
        duration_s,
        n_frames,
        frame_size[1],
        frame_size[0],
        fps,
        video_codec(),
        out_dir,
    )
    started = time.perf_counter()
    order = np.random.default_rng([seed, 1]).permutation(videos)
    split_of = np.repeat(np.arange(3), _split_counts(videos, splits))[np.argsort(order)]
    plans = []
    for index in range(videos):
        media_id = f"video_{index:03d}"
        split = _SPLIT_NAMES[split_of[index]]
        rng = np.random.default_rng([seed, 0, index])
        plan = plan_video(media_id, split, n_frames, fps, rng)
        write_clip(media_dir / f"{media_id}.mp4", _render_video(plan, frame_size, rng), fps)
        for task, labels in (("expr", plan.expr), ("au", plan.au), ("va", plan.va)):
            folder = annotations / _TASK_FOLDERS[task] / _SPLIT_FOLDERS[split]
            write_annotation(folder / f"{media_id}.txt", labels)
        plans.append(plan)
    _write_segments(out_dir / "segments.csv", plans)
    converted = abaw_manifest(annotations, media_dir)
    if converted.issues:  # the generator wrote both sides: an issue is a bug here
        raise RuntimeError(f"frames demo set has issues: {converted.issues}")
    manifest = converted.save(out_dir / "manifest.csv")
    log.info(
        "frames demo: %d videos in %s (%.1f s)", videos, manifest, time.perf_counter() - started
    )
    return manifest
