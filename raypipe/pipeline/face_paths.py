"""The visual path per core: every-frame MTCNN (the baseline) against a configured face path.

Both paths run in this process with one torch thread on the same decoded frames, media by
media in turn (so load from other work falls on both alike), after one warm-up window each
(weights load and first calls are left out; start-up is measured by the sequential and raypipe
paths of :mod:`raypipe.pipeline.benchmark`). Each path is a face extractor's own per-window
work: detection (every frame, or keyframes with faces carried between them), tracking, crops
and its embedding network. Decoding is timed once and charged to both, so
``frames_per_s_core`` is sampled frames per second of one core for decode + faces + embedding.

Recall of the configured path against the baseline, per sampled frame where the baseline finds
a face: ``face_recall_vs_baseline`` counts a frame when the configured path has a face
overlapping the baseline's largest face with IoU at least 0.5; ``face_recall_all_faces`` counts
every baseline face the same way.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from raypipe.config import ExtractConfig
from raypipe.extractors.registry import build_extractor
from raypipe.extractors.visual.base import VisualExtractor
from raypipe.faces.analysis import FrameWindow, stats_for, window_faces
from raypipe.faces.mtcnn import FaceDetections
from raypipe.faces.tracking import iou_matrix
from raypipe.media.context import MediaContext
from raypipe.media.video import SampledFrames

log = logging.getLogger(__name__)

#: Least IoU for a face of the configured path to count as the baseline's face.
RECALL_IOU = 0.5
#: Section options that make the baseline: MTCNN on every sampled frame.
BASELINE = {"detector": "mtcnn", "keyframe_interval": 1}


def face_recall(
    baseline: list[FaceDetections], other: list[FaceDetections], iou: float = RECALL_IOU
) -> dict[str, float | int]:
    """Recall of ``other`` against ``baseline``, frame by frame (the same frames, in order).

    Returns:
        ``baseline_face_frames`` (frames where the baseline finds a face), ``frame_recall``
        (fraction of them where ``other`` overlaps the baseline's largest face with IoU at
        least ``iou``), ``baseline_faces`` and ``face_recall`` (fraction of all baseline faces
        overlapped likewise). Recalls are 1.0 when the baseline finds no face.
    """
    frames = hits = faces = face_hits = 0
    for base, found in zip(baseline, other, strict=True):
        if not len(base):
            continue
        frames += 1
        faces += len(base)
        if not len(found):
            continue
        overlap = iou_matrix(base.boxes, found.boxes).max(axis=1) >= iou
        areas = (base.boxes[:, 2] - base.boxes[:, 0]) * (base.boxes[:, 3] - base.boxes[:, 1])
        hits += int(overlap[int(np.argmax(areas))])
        face_hits += int(overlap.sum())
    return {
        "baseline_face_frames": frames,
        "frame_recall": hits / frames if frames else 1.0,
        "baseline_faces": faces,
        "face_recall": face_hits / faces if faces else 1.0,
    }


def _decode(config: ExtractConfig, manifest: pd.DataFrame) -> tuple[list, float]:
    """Every media's sampled windows (unreadable media skipped) and the seconds decoding took."""
    media = []
    start = time.perf_counter()
    for row in manifest.itertuples(index=False):
        context = MediaContext(row.media_id, row.path, **config.video.model_dump())
        try:
            media.append((row.media_id, row.path, list(context.windows())))
        except Exception as exc:  # broken media fail in every path alike
            log.debug("face paths skip %s: %s", row.path, exc)
    return media, time.perf_counter() - start


def _warm_up(extractor: VisualExtractor, config: ExtractConfig, window: SampledFrames) -> None:
    """One window through ``extractor`` (weights load, first calls) before timing."""
    context = MediaContext("warm-up", "warm-up", **config.video.model_dump())
    extractor.update(context, FrameWindow(0, window, 0), extractor.start(context))


def _run_media(
    extractor: VisualExtractor, config: ExtractConfig, media_id: str, path: str, windows: list
) -> tuple[float, list[FaceDetections], int]:
    """Seconds of ``extractor``'s per-window work on one media, the faces of every frame, and
    the frames its detector ran on."""
    context = MediaContext(media_id, path, **config.video.model_dump())
    state = extractor.start(context)
    seconds = 0.0
    faces: list[FaceDetections] = []
    first_row = 0
    for index, part in enumerate(windows):
        window = FrameWindow(index, part, first_row)
        first_row += len(part)
        start = time.perf_counter()
        extractor.update(context, window, state)
        seconds += time.perf_counter() - start
        faces.extend(window_faces(context, window, extractor.settings).detections)
    return seconds, faces, stats_for(context, extractor.settings).detected_frames


def compare_face_paths(
    config: ExtractConfig, manifest: pd.DataFrame, extractor_name: str = "face_expression"
) -> dict[str, Any]:
    """Frames per second of one core and face recall: every-frame MTCNN against ``config``.

    Args:
        config: the extract config; its ``extractor_name`` section is the configured path.
        manifest: the media (columns ``media_id``, ``path``).
        extractor_name: the face extractor whose section and work are measured.

    Returns:
        ``frames``, ``baseline_frames_per_s_core``, ``frames_per_s_core``,
        ``speedup_vs_baseline``, ``face_recall_vs_baseline``, ``face_recall_all_faces``,
        ``detected_frames`` (frames the configured detector ran on), ``face_path`` (the
        configured detector and keyframe interval) and the seconds of each part.
    """
    section = getattr(config, extractor_name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        media, decode_s = _decode(config, manifest)
        warm = next(w for _, _, windows in media for w in windows if len(w))
        chosen = build_extractor(extractor_name, section, config.video)
        base = build_extractor(extractor_name, section.model_copy(update=BASELINE), config.video)
        _warm_up(base, config, warm)
        _warm_up(chosen, config, warm)
        base_s = chosen_s = 0.0
        base_faces: list[FaceDetections] = []
        chosen_faces: list[FaceDetections] = []
        detected = 0
        # Media by media, both paths in turn: load from other work falls on both alike.
        for media_id, path, windows in media:
            seconds, faces, _ = _run_media(base, config, media_id, path, windows)
            base_s += seconds
            base_faces.extend(faces)
            seconds, faces, count = _run_media(chosen, config, media_id, path, windows)
            chosen_s += seconds
            chosen_faces.extend(faces)
            detected += count
    finally:
        torch.set_num_threads(threads)
    frames = len(base_faces)
    recall = face_recall(base_faces, chosen_faces)
    baseline_rate = frames / (decode_s + base_s)
    rate = frames / (decode_s + chosen_s)
    return {
        "frames": frames,
        "face_path": f"{section.detector}, keyframe_interval {section.keyframe_interval}",
        "decode_s": round(decode_s, 2),
        "baseline_faces_s": round(base_s, 2),
        "faces_s": round(chosen_s, 2),
        "detected_frames": detected,
        "baseline_frames_per_s_core": round(baseline_rate, 2),
        "frames_per_s_core": round(rate, 2),
        "speedup_vs_baseline": round(rate / baseline_rate, 2),
        "face_recall_vs_baseline": round(recall["frame_recall"], 4),
        "face_recall_all_faces": round(recall["face_recall"], 4),
        "baseline_face_frames": recall["baseline_face_frames"],
    }
