"""Visual extractors that stream a media window by window and share one decode and one face pass.

A :class:`VisualExtractor` is fed the windows of sampled frames in order (``start``, ``update``
per window, ``finish``). :func:`run_visual_pass` decodes each window once and hands it to every
visual extractor of the media, so memory is bounded by one window and detection runs once.

Face extractors choose which faces become rows (``faces``):
- ``main``: the face of the main track in each frame (a "no face" row where it is absent);
- ``largest``: the largest face of each frame;
- ``all``: every face, one row each (group images and crowd scenes).
Frames without a chosen face are kept as rows with ``has_face = False`` and null features, so
sequences stay aligned with time and with audio.
"""

from __future__ import annotations

import logging
import time
import traceback
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_args

import numpy as np
import pyarrow as pa

from raypipe.config.extract import FacePolicy
from raypipe.errors import MediaError
from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.faces.align import align_faces
from raypipe.faces.analysis import (
    FaceSettings,
    FrameWindow,
    WindowFaces,
    shared_detector,
    stats_for,
    tracker_for,
    window_faces,
)
from raypipe.faces.keyframes import KeyframeSettings
from raypipe.media.context import MediaContext
from raypipe.media.coverage import apply_coverage, video_coverage
from raypipe.store.schema import CROP_SCHEMA, FACE_FRAME_SCHEMA

log = logging.getLogger(__name__)

FACE_POLICIES: tuple[str, ...] = get_args(FacePolicy)


def pick_faces(faces: WindowFaces, policy: str) -> list[tuple[int, int]]:
    """(frame position in window, face index) of the faces to embed under ``policy``.

    ``main`` returns every face (the main track is only known at the end of the media).
    """
    picks = []
    for pos, found in enumerate(faces.detections):
        if len(found) == 0:
            continue
        if policy == "largest":
            boxes = found.boxes
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            picks.append((pos, int(np.argmax(area))))
        else:
            picks.extend((pos, k) for k in range(len(found)))
    return picks


def aligned_crops(
    window: FrameWindow, faces: WindowFaces, size: int, margin: float
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Aligned crops of every face of the window (shared per size and margin).

    Returns the crops ``(K, size, size, 3)`` uint8 RGB and the row of each (frame, face).
    """

    def compute() -> tuple[np.ndarray, dict[tuple[int, int], int]]:
        where, marks = [], []
        for pos, found in enumerate(faces.detections):
            for k in range(len(found)):
                where.append((pos, k))
                marks.append(found.landmarks[k])
        frame_of = np.array([pos for pos, _ in where], dtype=np.int64)
        crops = align_faces(
            window.frames.frames, frame_of, np.array(marks).reshape(-1, 5, 2), size, margin
        )
        return crops, {key: row for row, key in enumerate(where)}

    return window.shared(f"aligned:{size}:{margin}", compute)


def vector_array(vectors: list[np.ndarray | None]) -> pa.Array:
    """list<float32> array from vectors (None: null) without going through Python floats."""
    present = [np.asarray(v, np.float32).reshape(-1) for v in vectors if v is not None]
    lengths = np.array([0 if v is None else np.asarray(v).size for v in vectors], np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    values = pa.array(np.concatenate(present) if present else np.zeros(0, np.float32))
    mask = pa.array([v is None for v in vectors])
    return pa.ListArray.from_arrays(offsets, values, type=pa.list_(pa.float32()), mask=mask)


@dataclass
class FaceRows:
    """Per-media accumulator of a face extractor's outputs, turned into rows at the end."""

    frame_index: list[int] = field(default_factory=list)
    timestamp_s: list[float] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)
    crops: list[dict[str, Any]] = field(default_factory=list)
    frame_vectors: list[np.ndarray] = field(default_factory=list)
    embed_s: float = 0.0

    def add_window(
        self,
        window: FrameWindow,
        faces: WindowFaces,
        picks: Sequence[tuple[int, int]],
        vectors: np.ndarray | None,
    ) -> None:
        """Record the window's frames and the picked faces with their vectors (rows of K)."""
        frames = window.frames
        self.frame_index.extend(int(i) for i in frames.source_indices)
        self.timestamp_s.extend(float(t) for t in frames.timestamps_s)
        for row, (pos, k) in enumerate(picks):
            found = faces.detections[pos]
            self.faces.append(
                {
                    "row": window.first_row + pos,
                    "face_index": k,
                    "track_id": int(faces.track_ids[pos][k]),
                    "score": float(found.scores[k]),
                    "box": [float(v) for v in found.boxes[k]],
                    "landmarks": [float(v) for v in found.landmarks[k].reshape(-1)],
                    "vector": None if vectors is None else vectors[row].copy(),
                }
            )

    def table(self, media_id: str, policy: str, main_track: int | None) -> pa.Table:
        """Frame rows (FACE_FRAME_SCHEMA) under ``policy``; frames without a face kept."""
        if policy == "main":
            chosen = [f for f in self.faces if f["track_id"] == main_track]
        else:
            chosen = list(self.faces)
        by_row: dict[int, list[dict[str, Any]]] = {}
        for face in chosen:
            by_row.setdefault(face["row"], []).append(face)
        columns: dict[str, list[Any]] = {name: [] for name in FACE_FRAME_SCHEMA.names}
        for row in range(len(self.frame_index)):
            for face in sorted(by_row.get(row, [None]), key=lambda f: f["face_index"] if f else 0):
                columns["media_id"].append(media_id)
                columns["frame_index"].append(self.frame_index[row])
                columns["timestamp_s"].append(self.timestamp_s[row])
                columns["has_face"].append(face is not None)
                columns["face_score"].append(face["score"] if face else None)
                columns["box"].append(face["box"] if face else None)
                columns["features"].append(face["vector"] if face else None)
                columns["face_index"].append(face["face_index"] if face else None)
                columns["track_id"].append(face["track_id"] if face else None)
                columns["main_track"].append((face["track_id"] == main_track) if face else None)
                columns["landmarks"].append(face["landmarks"] if face else None)
        columns["features"] = vector_array(columns["features"])
        return pa.Table.from_pydict(columns, schema=FACE_FRAME_SCHEMA)

    def crop_table(self, media_id: str, policy: str, main_track: int | None) -> pa.Table | None:
        """Stored aligned crops (CROP_SCHEMA) of the faces ``policy`` keeps, or None."""
        rows = [
            {**crop, "media_id": media_id, "main_track": crop["track_id"] == main_track}
            for crop in self.crops
            if policy != "main" or crop["track_id"] == main_track
        ]
        if not rows:
            return None
        return pa.Table.from_pylist(rows, schema=CROP_SCHEMA)


class VisualExtractor(Extractor):
    """A frame-level visual extractor fed window by window (see :func:`run_visual_pass`).

    Face extractors set ``settings`` (how faces are found) and ``faces`` (which become rows)
    and implement :meth:`embed`; extractors on whole frames override :meth:`update`.
    """

    modality: ClassVar[str] = "visual"
    level: ClassVar[str] = "frame"
    #: Face detection and tracking settings, shared with other extractors of equal settings.
    settings: FaceSettings = FaceSettings()
    #: Which faces become rows: 'main', 'largest' or 'all'.
    faces: str = "main"

    def setup_faces(self, detect: bool = True) -> None:
        """Set the face policy, device, GPU share and detection settings every face extractor
        shares from its section (a :class:`~raypipe.config.extract.FaceSection`), and take
        this process's shared MTCNN (``detect``: only when the extractor looks for faces)."""
        config = self.config
        self.faces = config.faces
        self.device = config.device
        self.gpu_fraction = config.gpu_fraction
        self.settings = FaceSettings(
            min_face_size=config.min_face_size,
            detect_batch=config.detect_batch,
            device=config.device,
            detector=config.detector,
            keyframes=KeyframeSettings(
                interval=config.keyframe_interval,
                match_iou=config.track_match_iou,
                min_score=config.track_min_score,
                cut_threshold=config.shot_cut_threshold,
            ),
        )
        self.detector = (
            shared_detector(config.min_face_size, config.device, config.detector)
            if detect
            else None
        )

    def face_config(self) -> dict[str, Any]:
        """The detection, tracking and selection settings (part of the version).

        The detector and keyframe settings join only when they differ from MTCNN on every
        frame, so versions made before those options existed stay valid.
        """
        config: dict[str, Any] = {
            "min_face_size": self.settings.min_face_size,
            "iou_threshold": self.settings.iou_threshold,
            "max_gap": self.settings.max_gap,
            "faces": self.faces,
        }
        if not self.settings.every_frame_mtcnn:
            keyframes = self.settings.keyframes
            config["detector"] = self.settings.detector
            config["keyframe_interval"] = keyframes.interval
            if keyframes.interval > 1:
                config["track_match_iou"] = keyframes.match_iou
                config["track_min_score"] = keyframes.min_score
                config["shot_cut_threshold"] = keyframes.cut_threshold
        return config

    def start(self, media: MediaContext) -> FaceRows:
        """A fresh accumulator for ``media``."""
        return FaceRows()

    @abstractmethod
    def embed(
        self, window: FrameWindow, faces: WindowFaces, picks: Sequence[tuple[int, int]]
    ) -> np.ndarray:
        """Feature vectors ``(len(picks), dim)`` float32 of the picked faces of ``window``."""

    def update(self, media: MediaContext, window: FrameWindow, state: FaceRows) -> None:
        """Process one window: shared detection, then this extractor's embedding."""
        faces = window_faces(media, window, self.settings)
        picks = pick_faces(faces, self.faces)
        start = time.perf_counter()
        vectors = self.embed(window, faces, picks) if picks else None
        state.embed_s += time.perf_counter() - start
        state.add_window(window, faces, picks, vectors)

    def finish(self, media: MediaContext, state: FaceRows) -> ExtractionResult:
        """The media row (with its quality summary) and the frame rows."""
        tracker = tracker_for(media, self.settings)
        stats = stats_for(media, self.settings)
        main = tracker.main_track()
        table = state.table(media.media_id, self.faces, main)
        row = {
            "status": "ok",
            "frames": len(state.frame_index),
            "face_frames": stats.face_frames,
            "tracks": len(tracker.tracks),
            "face_score": stats.mean_score,
            "duration_s": media.info.duration_s,
            "embed_s": state.embed_s,
        }
        return ExtractionResult(
            media_row=row,
            frame_rows=table,
            crop_rows=state.crop_table(media.media_id, self.faces, main),
        )

    def extract(self, media: MediaContext) -> ExtractionResult:
        result = run_visual_pass(media, [self])[self.name]
        if isinstance(result, BaseException):
            raise result
        return result


def run_visual_pass(
    media: MediaContext, extractors: Sequence[VisualExtractor]
) -> dict[str, ExtractionResult | BaseException]:
    """Decode ``media`` once, window by window, feeding every extractor in ``extractors``.

    Returns each extractor's result, or the exception that stopped it: a decode failure stops
    them all, an error inside one extractor stops only that one. Each media row gets the
    ``coverage`` of the decoded frames (:func:`raypipe.media.coverage.video_coverage`: from the
    first sampled frame to the last one plus one frame interval, over the declared duration),
    and a truncation note in ``error`` when that is below ``media.min_coverage``.
    """
    results: dict[str, ExtractionResult | BaseException] = {}
    states: dict[str, Any] = {}
    first_s: float | None = None
    last_s: float | None = None
    for extractor in extractors:
        try:
            states[extractor.name] = extractor.start(media)
        except Exception as exc:
            results[extractor.name] = exc
    try:
        first_row = 0
        for index, part in enumerate(media.windows()):
            window = FrameWindow(index, part, first_row)
            first_row += len(part)
            if len(part):
                first_s = float(part.timestamps_s[0]) if first_s is None else first_s
                last_s = float(part.timestamps_s[-1])
            for extractor in extractors:
                if extractor.name in results:
                    continue
                try:
                    extractor.update(media, window, states[extractor.name])
                except Exception as exc:
                    if not isinstance(exc, MediaError):
                        log.error(
                            "extractor %s failed on %s:\n%s",
                            extractor.name,
                            media.path,
                            traceback.format_exc(),
                        )
                    results[extractor.name] = exc
    except Exception as exc:  # decoding failed: every extractor still running fails with it
        for extractor in extractors:
            results.setdefault(extractor.name, exc)
    coverage = None
    for extractor in extractors:
        if extractor.name in results:
            continue
        try:
            result = extractor.finish(media, states[extractor.name])
            if coverage is None:
                coverage = video_coverage(media.info, first_s, last_s, media.fps)
            result.media_row = dict(result.media_row)
            apply_coverage(result.media_row, coverage, media.path, media.min_coverage)
            results[extractor.name] = result
        except Exception as exc:
            log.error(
                "extractor %s failed on %s:\n%s", extractor.name, media.path, traceback.format_exc()
            )
            results[extractor.name] = exc
    return results
