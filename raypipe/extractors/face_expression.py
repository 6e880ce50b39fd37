"""Facial-expression embeddings: MTCNN faces, the largest face cropped, a FER2013 CNN on it."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from raypipe.extractors.base import ExtractionResult, Extractor
from raypipe.faces.crop import crop_face, largest_face_index
from raypipe.faces.mtcnn import FaceDetections, MTCNNDetector
from raypipe.media.context import MediaContext
from raypipe.store.schema import FRAME_SCHEMA

log = logging.getLogger(__name__)

#: Frames passed to the detector at once (bounds memory for long videos).
DETECT_BATCH = 16


class FaceExpressionExtractor(Extractor):
    """Per sampled frame: detect faces (MTCNN), crop the largest, embed it with the FER CNN.

    Frames without a face are kept as rows with ``has_face = False`` and null features, so
    sequences stay aligned with time.

    Args:
        output: 'features' (128-d penultimate activations), 'logits' or 'probs' (7 classes).
        crop_size: side of the square face crop in pixels before the CNN's own 64x64 resize.
        margin: extra context around the face box, as a fraction of its longer side.
        min_face_size: smallest face the detector looks for, pixels.
        device: torch device for both networks ('cpu', 'cuda').
    """

    name: ClassVar[str] = "face_expression"
    modality: ClassVar[str] = "visual"
    level: ClassVar[str] = "frame"

    def __init__(
        self,
        output: str = "features",
        crop_size: int = 96,
        margin: float = 0.2,
        min_face_size: int = 20,
        device: str = "cpu",
    ) -> None:
        from raypipe.extractors.fer_cnn import FerEmbedder

        if output not in {"features", "logits", "probs"}:
            raise ValueError(f"output must be features, logits or probs, got {output!r}")
        self.output = output
        self.crop_size = crop_size
        self.margin = margin
        self.min_face_size = min_face_size
        self.device = device
        self.detector = MTCNNDetector(min_face_size=min_face_size, device=device)
        self.embedder = FerEmbedder(device=device)

    @property
    def dim(self) -> int:
        return self.embedder.dim if self.output == "features" else 7

    def config_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "crop_size": self.crop_size,
            "margin": self.margin,
            "min_face_size": self.min_face_size,
        }

    def weights_digest(self) -> str:
        return f"{self.detector.weights_digest}-{self.embedder.weights_digest}"

    def detect(self, media: MediaContext) -> list[FaceDetections]:
        """Face detections for every sampled frame, shared with other visual extractors."""

        def compute() -> list[FaceDetections]:
            frames = media.frames.frames
            found: list[FaceDetections] = []
            for start in range(0, len(frames), DETECT_BATCH):
                found.extend(self.detector.detect(frames[start : start + DETECT_BATCH]))
            return found

        return media.shared(f"faces:mtcnn:{self.min_face_size}", compute)

    def extract(self, media: MediaContext) -> ExtractionResult:
        sampled = media.frames
        detections = self.detect(media)
        crops, scores, boxes, face_rows = [], [], [], []
        for index, (frame, found) in enumerate(zip(sampled.frames, detections, strict=True)):
            best = largest_face_index(found)
            if best is None:
                scores.append(None)
                boxes.append(None)
                continue
            crops.append(crop_face(frame, found.boxes[best], self.crop_size, self.margin))
            scores.append(float(found.scores[best]))
            boxes.append([float(v) for v in found.boxes[best]])
            face_rows.append(index)
        features: list[list[float] | None] = [None] * len(sampled.frames)
        if crops:
            embedded = self.embedder.embed(np.stack(crops))[self.output]
            for row, vector in zip(face_rows, embedded, strict=True):
                features[row] = vector.astype(np.float32).tolist()
        count = len(sampled.frames)
        table = pa.Table.from_pydict(
            {
                "media_id": [media.media_id] * count,
                "frame_index": sampled.source_indices.astype(np.int32),
                "timestamp_s": sampled.timestamps_s.astype(np.float32),
                "has_face": [row is not None for row in features],
                "face_score": scores,
                "box": boxes,
                "features": features,
            },
            schema=FRAME_SCHEMA,
        )
        row = {
            "status": "ok",
            "frames": count,
            "face_frames": len(face_rows),
            "duration_s": media.info.duration_s,
        }
        return ExtractionResult(media_row=row, frame_rows=table)
