"""Torchvision backbone embeddings of aligned faces, or of whole frames (the global branch).

The network comes from :func:`raypipe.models.backbones.build_backbone` with weights from a
checkpoint (a state-dict file or a checkpoint folder holding ``model.pt``; a local path or a URI
such as ``s3://bucket/run/export/model.pt``, copied into local scratch). The version hashes
the checkpoint file's bytes, so pointing ``checkpoint`` at a newly fine-tuned model makes only
this extractor's stored rows stale; a re-run recomputes exactly those.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from raypipe.config.extract import FaceBackboneConfig
from raypipe.errors import ConfigError
from raypipe.extractors.base import ExtractionResult, numbered_names
from raypipe.extractors.visual.base import (
    FaceRows,
    VisualExtractor,
    aligned_crops,
    vector_array,
)
from raypipe.faces.analysis import FrameWindow, WindowFaces
from raypipe.media.context import MediaContext
from raypipe.weights import file_sha256

log = logging.getLogger(__name__)


class FaceBackboneExtractor(VisualExtractor):
    """Per sampled frame: a torchvision backbone's features of each aligned face, or the frame.

    Options: :class:`~raypipe.config.extract.FaceBackboneConfig`.
    """

    name: ClassVar[str] = "face_backbone"

    config_model = FaceBackboneConfig

    def __init__(self, config: FaceBackboneConfig | None = None, **options: Any) -> None:
        from raypipe.models.backbones import build_backbone, staged_checkpoint

        super().__init__(config, **options)
        c = self.config
        if c.checkpoint is None:
            raise ConfigError(
                "face_backbone.checkpoint is not set: give the path of a state-dict file or "
                "checkpoint folder (a randomly initialised backbone gives meaningless features)."
            )
        self.arch = c.arch
        self.checkpoint = str(c.checkpoint)
        self.input = c.input
        self.crop_size = c.crop_size
        self.margin = c.margin
        self.setup_faces(detect=c.input == "face")
        self.batch_size = c.batch_size
        # A checkpoint on object storage is read from one scratch copy: digest and weights.
        with staged_checkpoint(c.checkpoint) as weights:
            self._digest = file_sha256(weights, length=16)
            self.model = build_backbone(c.arch, weights).to(c.device).eval()

    @property
    def dim(self) -> int:
        return int(self.model.dim)

    @property
    def feature_names(self) -> list[str]:
        """``emb_000``...: the backbone's pooled output channels, without individual meaning."""
        return numbered_names("emb", self.dim)

    def config_dict(self) -> dict[str, Any]:
        config = {
            "arch": self.arch,
            "input": self.input,
            "crop_size": self.crop_size,
        }
        if self.input == "face":
            config.update({"margin": self.margin, **self.face_config()})
        return config

    def weights_digest(self) -> str:
        detector = self.detector.weights_digest if self.detector is not None else "none"
        return f"{self._digest}-{detector}"

    def forward(self, images: np.ndarray) -> np.ndarray:
        """Features ``(N, dim)`` float32 of ``(N, S, S, 3)`` uint8 RGB images."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = torch.from_numpy(
                    np.ascontiguousarray(images[start : start + self.batch_size])
                )
                chunk = chunk.to(self.device).permute(0, 3, 1, 2).float() / 255.0
                out.append(self.model(chunk).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed(
        self, window: FrameWindow, faces: WindowFaces, picks: Sequence[tuple[int, int]]
    ) -> np.ndarray:
        crops, row_of = aligned_crops(window, faces, self.crop_size, self.margin)
        return self.forward(crops[[row_of[p] for p in picks]])

    # -- whole frames (no faces) -------------------------------------------------------------
    def update(self, media: MediaContext, window: FrameWindow, state: FaceRows) -> None:
        if self.input == "face":
            super().update(media, window, state)
            return
        start = time.perf_counter()
        frames = torch.from_numpy(window.frames.frames).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            resized = F.interpolate(
                frames,
                size=(self.crop_size, self.crop_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        images = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        vectors = self.forward(images)
        state.embed_s += time.perf_counter() - start
        state.frame_index.extend(int(i) for i in window.frames.source_indices)
        state.timestamp_s.extend(float(t) for t in window.frames.timestamps_s)
        state.frame_vectors.extend(vectors)

    def finish(self, media: MediaContext, state: FaceRows) -> ExtractionResult:
        if self.input == "face":
            return super().finish(media, state)
        import pyarrow as pa

        from raypipe.store.schema import FACE_FRAME_SCHEMA

        count = len(state.frame_index)
        columns: dict[str, list[Any]] = {n: [None] * count for n in FACE_FRAME_SCHEMA.names}
        columns["media_id"] = [media.media_id] * count
        columns["frame_index"] = state.frame_index
        columns["timestamp_s"] = state.timestamp_s
        columns["has_face"] = [False] * count
        columns["features"] = vector_array(state.frame_vectors)
        table = pa.Table.from_pydict(columns, schema=FACE_FRAME_SCHEMA)
        row = {
            "status": "ok",
            "frames": count,
            "duration_s": media.info.duration_s,
            "embed_s": state.embed_s,
        }
        return ExtractionResult(media_row=row, frame_rows=table)
