"""The faces of a media, window by window: batched detection (MTCNN or RetinaFace, on every
frame or on keyframes with faces carried between them), then tracking.

Visual extractors of one media share this pass: detection runs once per window of frames and
its tracker once per media, whatever number of extractors read the faces. The detector itself is
built once per worker process for each (detector, min_face_size, device) and shared too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from raypipe.faces.keyframes import KeyframeSettings, detect_with_keyframes
from raypipe.faces.mtcnn import FaceDetections, MTCNNDetector
from raypipe.faces.retinaface import RetinaFaceDetector
from raypipe.faces.tracking import FaceTracker
from raypipe.media.context import MediaContext
from raypipe.media.video import SampledFrames


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found and tracked.

    Attributes:
        min_face_size: smallest face searched for, pixels of the decoded frame.
        detect_batch: frames per detector call.
        device: torch device of the detector ('cpu', 'cuda').
        iou_threshold: least box overlap that continues a track.
        max_gap: sampled frames a track may go unseen.
        detector: 'mtcnn' or 'retinaface'.
        keyframes: detection interval and the checks that carry faces between keyframes.
    """

    min_face_size: int = 20
    detect_batch: int = 16
    device: str = "cpu"
    iou_threshold: float = 0.3
    max_gap: int = 5
    detector: str = "mtcnn"
    keyframes: KeyframeSettings = field(default_factory=KeyframeSettings)

    @property
    def every_frame_mtcnn(self) -> bool:
        """True for MTCNN on every sampled frame (the settings before keyframes existed)."""
        return self.detector == "mtcnn" and self.keyframes.interval == 1

    @property
    def key(self) -> str:
        """Cache key of the faces these settings produce (the device does not change them)."""
        key = f"faces:{self.min_face_size}:{self.iou_threshold}:{self.max_gap}"
        if not self.every_frame_mtcnn:
            k = self.keyframes
            key += f":{self.detector}:{k.interval}:{k.match_iou}:{k.min_score}:{k.cut_threshold}"
        return key


def shared_detector(
    min_face_size: int, device: str, detector: str = "mtcnn"
) -> MTCNNDetector | RetinaFaceDetector:
    """One face detector per worker process and setting (weights load once).

    Args:
        min_face_size: smallest face searched for, pixels of the decoded frame.
        device: torch device ('cpu', 'cuda').
        detector: 'mtcnn' or 'retinaface'.
    """
    # One cache key however the arguments are spelled (positional, keyword, default).
    return _detector(int(min_face_size), str(device), detector)


@lru_cache(maxsize=4)
def _detector(min_face_size: int, device: str, detector: str) -> MTCNNDetector | RetinaFaceDetector:
    if detector == "retinaface":
        return RetinaFaceDetector(min_face_size=min_face_size, device=device)
    if detector != "mtcnn":
        raise ValueError(f"detector must be 'mtcnn' or 'retinaface', got {detector!r}")
    return MTCNNDetector(min_face_size=min_face_size, device=device)


@dataclass
class FrameWindow:
    """One window of sampled frames with a cache for what extractors derive from it.

    Attributes:
        index: position of the window in the media (0, 1, ...).
        frames: the sampled frames.
        first_row: index of the window's first frame among all sampled frames of the media.
    """

    index: int
    frames: SampledFrames
    first_row: int
    _cache: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute ``key`` once per window (e.g. detections, aligned crops of a size)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


@dataclass(frozen=True)
class WindowFaces:
    """Faces of every frame of one window: detections and the track id of each face."""

    detections: list[FaceDetections]
    track_ids: list[np.ndarray]


@dataclass
class FaceStats:
    """Running totals of a media's faces for its quality summary."""

    frames: int = 0
    detected_frames: int = 0
    face_frames: int = 0
    faces: int = 0
    score_sum: float = 0.0

    @property
    def mean_score(self) -> float | None:
        """Mean detector confidence over all faces, or None without faces."""
        return self.score_sum / self.faces if self.faces else None


def tracker_for(media: MediaContext, settings: FaceSettings) -> FaceTracker:
    """The media's tracker for ``settings`` (one per media, shared by its extractors)."""
    return media.shared(
        f"tracker:{settings.key}",
        lambda: FaceTracker(settings.iou_threshold, settings.max_gap),
    )


def stats_for(media: MediaContext, settings: FaceSettings) -> FaceStats:
    """The media's running face statistics for ``settings``."""
    return media.shared(f"stats:{settings.key}", FaceStats)


def window_faces(media: MediaContext, window: FrameWindow, settings: FaceSettings) -> WindowFaces:
    """Detect and track the faces of ``window`` (once per window, whoever asks first).

    The detector runs on every frame, or on keyframes and where carrying faces between them
    fails (:func:`raypipe.faces.keyframes.detect_with_keyframes`). Seconds spent are added to
    ``media.seconds["faces"]``.
    """

    def compute() -> WindowFaces:
        start = time.perf_counter()
        detector = shared_detector(settings.min_face_size, settings.device, settings.detector)
        keyframes = replace(settings.keyframes, detect_batch=settings.detect_batch)
        detections, counts = detect_with_keyframes(detector.detect, window.frames.frames, keyframes)
        tracker = tracker_for(media, settings)
        stats = stats_for(media, settings)
        stats.detected_frames += counts.detected
        ids = []
        for found in detections:
            ids.append(tracker.update(found.boxes, found.scores))
            stats.frames += 1
            stats.face_frames += int(len(found) > 0)
            stats.faces += len(found)
            stats.score_sum += float(np.sum(found.scores))
        media.seconds["faces"] += time.perf_counter() - start
        return WindowFaces(detections, ids)

    return window.shared(settings.key, compute)
