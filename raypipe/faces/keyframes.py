"""Face detection on keyframes, faces carried between them, re-detection where that fails.

A window of sampled frames is processed at once, so both ends of every gap between keyframes are
known: faces are carried across a gap by interpolating each face's box and five landmarks
linearly between its detections at the two ends. The detector runs on:

- keyframes: the window's first and last frame, every ``interval``-th frame, and both frames
  around each shot cut (:func:`raypipe.faces.shot_cuts.shot_cuts`);
- the middle frame of any gap whose ends do not agree, recursively (bisection), until every
  gap agrees or is closed. Ends agree when they hold the same number of faces, each face at one
  end overlaps exactly one at the other with IoU at least ``match_iou`` (a face entering,
  leaving, or moving too fast breaks this: track loss), and every face's probability is at least
  ``min_score`` (low confidence).

``interval=1`` detects on every frame (no carrying). Carried faces get the lower of their two
end scores. Frame indices are positions in the window (0-based).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from raypipe.faces.mtcnn import FaceDetections
from raypipe.faces.shot_cuts import shot_cuts
from raypipe.faces.tracking import iou_matrix

#: A detector: ``(B, H, W, 3)`` uint8 RGB frames -> one FaceDetections per frame.
Detect = Callable[[np.ndarray], list[FaceDetections]]


@dataclass(frozen=True)
class KeyframeSettings:
    """How often faces are detected and when carrying between detections is trusted.

    Attributes:
        interval: sampled frames from one keyframe to the next (1: detect on every frame).
        match_iou: least IoU between a face's boxes at the two ends of a gap.
        min_score: least face probability at both ends for a gap to be carried.
        cut_threshold: mean absolute thumbnail difference that is a shot cut, grey levels.
        detect_batch: frames per detector call.
    """

    interval: int = 1
    match_iou: float = 0.5
    min_score: float = 0.9
    cut_threshold: float = 30.0
    detect_batch: int = 16


@dataclass
class KeyframeCounts:
    """Frames of a window by how their faces were obtained."""

    detected: int = 0
    carried: int = 0


def _match(a: FaceDetections, b: FaceDetections, match_iou: float) -> np.ndarray | None:
    """Index in ``b`` of each face of ``a`` when the two frames agree, else None."""
    if len(a) != len(b):
        return None
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    overlap = iou_matrix(a.boxes, b.boxes)
    partner = overlap.argmax(axis=1)
    if len(set(partner.tolist())) != len(a):
        return None
    if (overlap[np.arange(len(a)), partner] < match_iou).any():
        return None
    return partner


def _carry(a: FaceDetections, b: FaceDetections, partner: np.ndarray, t: float) -> FaceDetections:
    """Faces at fraction ``t`` (0 at ``a``, 1 at ``b``) of the way between two agreeing frames."""
    if len(a) == 0:
        return FaceDetections.empty()
    boxes = (1 - t) * a.boxes + t * b.boxes[partner]
    marks = (1 - t) * a.landmarks + t * b.landmarks[partner]
    scores = np.minimum(a.scores, b.scores[partner])
    return FaceDetections(
        boxes.astype(np.float32), scores.astype(np.float32), marks.astype(np.float32)
    )


def keyframes(count: int, interval: int, cuts: np.ndarray) -> list[int]:
    """Sorted keyframe positions of a window of ``count`` frames (see the module docstring)."""
    if count == 0:
        return []
    keys = set(range(0, count, max(interval, 1))) | {count - 1}
    for i in np.flatnonzero(cuts):
        keys.update((int(i) - 1, int(i)))
    return sorted(k for k in keys if 0 <= k < count)


def detect_with_keyframes(
    detect: Detect, frames: np.ndarray, settings: KeyframeSettings
) -> tuple[list[FaceDetections], KeyframeCounts]:
    """Faces of every frame of a window, detecting on keyframes and where carrying fails.

    Args:
        detect: the face detector.
        frames: ``(B, H, W, 3)`` uint8 RGB frames of one window, in time order.
        settings: interval and carrying checks.

    Returns:
        One :class:`FaceDetections` per frame, and how many frames were detected or carried.
    """
    count = len(frames)
    found: dict[int, FaceDetections] = {}

    def run(positions: Sequence[int]) -> None:
        for first in range(0, len(positions), settings.detect_batch):
            chunk = list(positions[first : first + settings.detect_batch])
            for position, faces in zip(chunk, detect(frames[chunk]), strict=True):
                found[position] = faces

    if settings.interval <= 1:
        run(range(count))
        return [found[i] for i in range(count)], KeyframeCounts(detected=count)
    cuts = shot_cuts(frames, settings.cut_threshold)
    run(keyframes(count, settings.interval, cuts))
    gaps = [(a, b) for a, b in zip(sorted(found), sorted(found)[1:], strict=False) if b - a > 1]
    out: dict[int, FaceDetections] = {}
    while gaps:
        bisect: list[tuple[int, int]] = []
        for a, b in gaps:
            ends_sure = all((found[i].scores >= settings.min_score).all() for i in (a, b))
            partner = _match(found[a], found[b], settings.match_iou) if ends_sure else None
            if partner is None:
                bisect.append((a, b))
                continue
            for i in range(a + 1, b):
                out[i] = _carry(found[a], found[b], partner, (i - a) / (b - a))
        middles = [(a + b) // 2 for a, b in bisect]
        run(middles)
        gaps = [
            gap
            for (a, b), m in zip(bisect, middles, strict=True)
            for gap in ((a, m), (m, b))
            if gap[1] - gap[0] > 1
        ]
    counts = KeyframeCounts(detected=len(found), carried=len(out))
    out.update(found)
    return [out[i] for i in range(count)], counts
