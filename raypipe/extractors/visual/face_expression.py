"""Facial-expression embeddings: MTCNN faces, tracked, cropped, a FER2013 CNN on each."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from raypipe.extractors.visual.base import VisualExtractor, aligned_crops
from raypipe.faces.analysis import FrameWindow, WindowFaces
from raypipe.faces.crop import crop_face

log = logging.getLogger(__name__)


class FaceExpressionExtractor(VisualExtractor):
    """Per sampled frame: faces (MTCNN, tracked), a crop of each, the FER CNN on it.

    Frames without a face are kept as rows with ``has_face = False`` and null features, so
    sequences stay aligned with time.

    Args:
        output: 'features' (128-d penultimate activations), 'logits' or 'probs' (7 classes).
        crop_size: side of the square face crop in pixels before the CNN's own 64x64 resize.
        margin: extra context around the face box, as a fraction of its longer side.
        min_face_size: smallest face the detector looks for, pixels.
        align: crop by five-point alignment instead of the (square, margin-grown) box.
        faces: which faces become rows: 'main' (main track), 'largest' or 'all'.
        detect_batch: frames per detector call.
        device: torch device for both networks ('cpu', 'cuda').
        gpu_fraction: share of a GPU one worker reserves when ``device`` is 'cuda'.
    """

    name: ClassVar[str] = "face_expression"
    revision: ClassVar[int] = 2

    def __init__(
        self,
        output: str = "features",
        crop_size: int = 96,
        margin: float = 0.2,
        min_face_size: int = 20,
        align: bool = False,
        faces: str = "main",
        detect_batch: int = 16,
        device: str = "cpu",
        gpu_fraction: float = 0.25,
    ) -> None:
        from raypipe.extractors.visual.fer_cnn import FerEmbedder

        if output not in {"features", "logits", "probs"}:
            raise ValueError(f"output must be features, logits or probs, got {output!r}")
        self.setup_faces(faces, min_face_size, detect_batch, device, gpu_fraction)
        self.output = output
        self.crop_size = crop_size
        self.margin = margin
        self.align = align
        self.embedder = FerEmbedder(device=device)

    @property
    def dim(self) -> int:
        return self.embedder.dim if self.output == "features" else 7

    def config_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "crop_size": self.crop_size,
            "margin": self.margin,
            "align": self.align,
            **self.face_config(),
        }

    def weights_digest(self) -> str:
        return f"{self.detector.weights_digest}-{self.embedder.weights_digest}"

    def embed(
        self, window: FrameWindow, faces: WindowFaces, picks: Sequence[tuple[int, int]]
    ) -> np.ndarray:
        frames = window.frames.frames
        if self.align:
            crops, row_of = aligned_crops(window, faces, self.crop_size, self.margin)
            batch = crops[[row_of[p] for p in picks]]
        else:
            batch = np.stack(
                [
                    crop_face(
                        frames[pos], faces.detections[pos].boxes[k], self.crop_size, self.margin
                    )
                    for pos, k in picks
                ]
            )
        return self.embedder.embed(batch)[self.output].astype(np.float32)
