"""Linking faces across sampled frames into tracks, and choosing the main track.

Greedy IoU matching, frame by frame: each face joins the active track whose last box overlaps it
most (IoU at least ``iou_threshold``), pairs taken best first; a face that matches nothing starts
a new track; a track not seen for more than ``max_gap`` sampled frames ends. It is online, so a
long video is tracked window by window with constant memory per track.

The main track is the one present in the most frames, ties broken by the larger mean box area:
in a clip of one speaker it is the speaker, even if a background face flickers in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    """One face followed over time. Frames are counted in sampled frames; areas in pixels²."""

    track_id: int
    first_frame: int
    last_frame: int
    frames: int
    area_sum: float
    score_sum: float
    last_box: np.ndarray

    @property
    def mean_area(self) -> float:
        """Mean box area, pixels²."""
        return self.area_sum / max(self.frames, 1)


class FaceTracker:
    """Online IoU tracker over sampled frames.

    Args:
        iou_threshold: least overlap for a face to continue a track.
        max_gap: sampled frames a track may go unseen and still be continued.
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: int = 5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_gap = max_gap
        self.tracks: list[Track] = []
        self.frame = -1

    def update(self, boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Assign the faces of the next sampled frame to tracks; returns their track ids (N,)."""
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64)
        ids = np.full(len(boxes), -1, dtype=np.int64)
        active = [t for t in self.tracks if self.frame - t.last_frame <= self.max_gap + 1]
        if len(boxes) and active:
            overlap = iou_matrix(boxes, np.stack([t.last_box for t in active]))
            pairs = np.argwhere(overlap >= self.iou_threshold)
            order = np.argsort(-overlap[pairs[:, 0], pairs[:, 1]], kind="stable")
            used_faces, used_tracks = set(), set()
            for face, track in pairs[order]:
                if face in used_faces or track in used_tracks:
                    continue
                used_faces.add(face)
                used_tracks.add(track)
                ids[face] = active[track].track_id
        for face in range(len(boxes)):
            box = boxes[face]
            area = float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))
            if ids[face] < 0:
                track = Track(len(self.tracks), self.frame, self.frame, 0, 0.0, 0.0, box)
                self.tracks.append(track)
                ids[face] = track.track_id
            track = self.tracks[ids[face]]
            track.last_frame = self.frame
            track.frames += 1
            track.area_sum += area
            track.score_sum += float(scores[face])
            track.last_box = box
        return ids

    def main_track(self) -> int | None:
        """Id of the track present in the most frames (ties: larger mean area); None if none."""
        if not self.tracks:
            return None
        best = max(self.tracks, key=lambda t: (t.frames, t.mean_area, -t.track_id))
        return best.track_id
