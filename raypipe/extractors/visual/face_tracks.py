"""Every face of every sampled frame with its box, landmarks, score and track; optional crops.

This is the record of the shared face pass itself: one row per face (and one "no face" row per
frame without any), the track it belongs to and whether that is the media's main track. Its
feature vector is the face's landmark geometry: the five points as fractions of the box (x, y in
[0, 1] inside it), 10 numbers. With ``store_crops`` it also writes each face's aligned crop into
the store's ``crops`` table (docs/store.md), for training backbones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import FaceTracksConfig
from raypipe.extractors.visual.base import (
    FaceRows,
    VisualExtractor,
    aligned_crops,
    pick_faces,
)
from raypipe.faces.analysis import FrameWindow, WindowFaces
from raypipe.media.context import MediaContext

#: The five MTCNN landmarks in the detector's order ("left" as seen in the image).
LANDMARKS: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class FaceTracksExtractor(VisualExtractor):
    """Faces, tracks and landmark geometry per sampled frame; aligned crops on request.

    Options: :class:`~raypipe.config.extract.FaceTracksConfig`.
    """

    name: ClassVar[str] = "face_tracks"

    config_model = FaceTracksConfig

    def __init__(self, config: FaceTracksConfig | None = None, **options: Any) -> None:
        super().__init__(config, **options)
        self.setup_faces()
        self.store_crops = self.config.store_crops
        self.crop_size = self.config.crop_size
        self.margin = self.config.margin

    @property
    def dim(self) -> int:
        return 10

    @property
    def feature_names(self) -> list[str]:
        """The x of the five landmarks, then their y, as fractions of the face box:
        ``left_eye_x``... ``mouth_right_x``, ``left_eye_y``... ``mouth_right_y`` (MTCNN's
        landmark order; "left" as seen in the image)."""
        return [f"{point}_{axis}" for axis in ("x", "y") for point in LANDMARKS]

    def config_dict(self) -> dict[str, Any]:
        config = {"store_crops": self.store_crops, **self.face_config()}
        if self.store_crops:
            config.update({"crop_size": self.crop_size, "margin": self.margin})
        return config

    def weights_digest(self) -> str:
        return self.detector.weights_digest

    def embed(
        self, window: FrameWindow, faces: WindowFaces, picks: Sequence[tuple[int, int]]
    ) -> np.ndarray:
        out = np.zeros((len(picks), 10), np.float32)
        for row, (pos, k) in enumerate(picks):
            x1, y1, x2, y2 = faces.detections[pos].boxes[k]
            points = faces.detections[pos].landmarks[k]
            size = np.array([max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)])
            out[row] = ((points - np.array([x1, y1])) / size).T.reshape(-1)  # x1..x5, y1..y5
        return out

    def update(self, media: MediaContext, window: FrameWindow, state: FaceRows) -> None:
        super().update(media, window, state)
        if not self.store_crops:
            return
        faces = window.shared(self.settings.key, lambda: None)
        picks = pick_faces(faces, self.faces)
        if not picks:
            return
        crops, row_of = aligned_crops(window, faces, self.crop_size, self.margin)
        frames = window.frames
        for pos, k in picks:
            state.crops.append(
                {
                    "frame_index": int(frames.source_indices[pos]),
                    "timestamp_s": float(frames.timestamps_s[pos]),
                    "face_index": k,
                    "track_id": int(faces.track_ids[pos][k]),
                    "size": self.crop_size,
                    "pixels": crops[row_of[(pos, k)]].tobytes(),
                }
            )
