"""The extractor contract: name, version, level, dimension, resources, and ``extract``.

An extractor turns a :class:`~raypipe.media.context.MediaContext` into one media-level row (its
status, counts and, for media-level extractors, the feature vector) and, for frame-level
extractors, a table of frame rows. Its version hashes its code revision, config and weights, so
changing any of them makes stored results stale and a re-run recomputes exactly those.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from raypipe.media.context import MediaContext


@dataclass
class ExtractionResult:
    """Output for one media: the media row (schema: store MEDIA_SCHEMA) and optional frame rows."""

    media_row: dict[str, Any]
    frame_rows: pa.Table | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: Aligned face crops (store CROP_SCHEMA), kept only when an extractor is asked to.
    crop_rows: pa.Table | None = None


class Extractor(ABC):
    """Base of all extractors. Subclasses set the class attributes and implement ``extract``."""

    #: Registry name; also the folder name in the store.
    name: ClassVar[str]
    #: 'visual', 'audio' or 'text'.
    modality: ClassVar[str]
    #: 'frame' (rows per sampled frame) or 'media' (one vector per media).
    level: ClassVar[str]
    #: Bumped when the code changes what the extractor outputs.
    revision: ClassVar[int] = 1
    #: Frame sampling a visual extractor runs under (fps, max_side, max_frames), set by
    #: ``registry.build_extractor``; part of the version when set.
    sampling: dict[str, Any] | None = None

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of the feature vector."""

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """Settings that change the output (part of the version hash)."""

    @abstractmethod
    def weights_digest(self) -> str:
        """Digest of the weights or library version that determine the output."""

    @property
    def resources(self) -> dict[str, float]:
        """Ray resources one copy of this extractor needs (num_cpus, num_gpus).

        One CPU; on a CUDA ``device`` attribute also ``gpu_fraction`` of a GPU (extractors
        without those attributes are CPU-only).
        """
        device = str(getattr(self, "device", "cpu"))
        fraction = float(getattr(self, "gpu_fraction", 0.0))
        return {"num_cpus": 1.0, "num_gpus": fraction if device.startswith("cuda") else 0.0}

    @property
    def version(self) -> str:
        """Short hash of name, code revision, config and weights."""
        payload = json.dumps(
            {
                "name": self.name,
                "revision": self.revision,
                "config": self.config_dict(),
                "weights": self.weights_digest(),
                **({"sampling": self.sampling} if self.sampling is not None else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    @abstractmethod
    def extract(self, media: MediaContext) -> ExtractionResult:
        """Compute features for one media; raise MediaError for problems with the file."""
