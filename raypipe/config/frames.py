"""Frame-level training data: which stored features, which labels, which splits (the
``data`` section of the frame-level recipes)."""

from __future__ import annotations

from pydantic import Field, model_validator

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig
from raypipe.errors import ConfigError


class SpanFeaturesConfig(StrictModel):
    """Audio or text features of time spans (openSMILE LLD frames, Whisper windows) averaged
    around each sampled video frame."""

    extractor: str
    """Audio/text extractor whose span rows are read (e.g. opensmile_lld, whisper_embedding)."""
    version: str | None = None
    """Its version; unset: the store's current version."""
    kind: str | None = None
    """Span kind to keep ('lld', 'window', 'segment', ...); unset: every kind."""
    window_s: float = Field(default=0.5, gt=0)
    """Width of the time window centred on each frame whose spans are averaged, seconds."""


class FrameDataConfig(StrictModel):
    """Stored frame features aligned with per-frame labels (ABAW annotation folder or table)."""

    store: str | None = None
    """Feature store holding the frame rows (a path or a URI such as s3://bucket/store)."""
    extractors: list[str] = ["face_expression"]
    """Visual frame-level extractors whose features are joined per sampled frame, in order."""
    versions: dict[str, str] = {}
    """Version per extractor name; an extractor not listed uses the store's current version."""
    spans: list[SpanFeaturesConfig] = []
    """Audio/text span features appended to each frame's features (off when empty)."""
    annotations: str | None = None
    """ABAW annotation folder (EXPR/AU/VA task folders of <video>.txt files, split folders)."""
    labels_table: str | None = None
    """Per-frame label table instead (CSV or Parquet): media_id, frame (native index), expr,
    AU columns, valence, arousal (-1 / -1 / -5 or empty: unlabelled)."""
    fps: float | None = Field(default=None, gt=0)
    """Native frame rate of every video, Hz; unset: each video's own, probed from its file."""
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Share of media without a split (manifest or annotation folder) put in val, by id hash."""

    @model_validator(mode="after")
    def _one_label_source(self) -> FrameDataConfig:
        if self.annotations and self.labels_table:
            raise ConfigError(
                "data.annotations and data.labels_table are both set; give one label source."
            )
        return self


class FrameTrainingConfig(StrictModel):
    """Optimiser, AU thresholds and Ray Train settings shared by the frame-level recipes that
    train networks (multitask, sequence)."""

    lr: float = Field(default=1e-3, gt=0)
    """Learning rate (AdamW)."""
    weight_decay: float = Field(default=1e-4, ge=0)
    """AdamW weight decay."""
    threshold_grid: list[float] = [round(0.05 * k, 2) for k in range(1, 20)]
    """Candidate AU thresholds; each AU takes the one with the best F1 on val."""
    num_workers: int = Field(default=1, ge=1)
    """Ray Train workers (data-parallel)."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs reserved per worker."""
    use_gpu: bool = False
    """Train on one GPU per worker."""
    max_failures: int = Field(default=2, ge=0)
    """Worker-group restarts from the last checkpoint before a training run fails."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
