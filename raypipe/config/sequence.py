"""`raypipe recipe sequence`: windows of visual, audio and text frame features, per-modality
temporal convolutions, attention fusion across modalities, frame logits averaged back to
frames (and per video for clip labels)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raypipe.config.frames import FrameDataConfig, FrameTrainingConfig
from raypipe.errors import ConfigError

SequenceTask = Literal["expr", "au", "va"]


class SequenceConfig(FrameTrainingConfig):
    """Windowed multimodal sequence recipe (ABAW7 feature-based compound/expression system)."""

    run: str | None = None
    """Run folder for checkpoints, models and frame-level predictions (a path or s3://...)."""
    data: FrameDataConfig = FrameDataConfig()
    """Where frame features and labels come from; each visual extractor and each data.spans
    entry is one modality."""
    label_space: Literal["abaw_expr", "abaw2020_expr"] = "abaw_expr"
    """Expression classes when labels come from a table (an annotation folder names its own)."""
    tasks: list[SequenceTask] = ["expr"]
    """Frame-level tasks trained and written as models sequence.<task>."""
    window: int = Field(default=300, ge=1)
    """Window length, sampled frames."""
    hop: int = Field(default=200, ge=1)
    """Step between window starts, sampled frames (below window: windows overlap)."""
    hidden: int = Field(default=128, ge=4)
    """Channels of each modality's temporal convolutions and of the fusion."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout inside the temporal convolutions."""
    clip: bool = True
    """Also write model sequence.clip: per video, the mean of its frame expression logits."""
    epochs: int = Field(default=20, ge=1)
    """Training epochs (a re-run with more continues from the last one)."""
    batch_size: int = Field(default=8, ge=1)
    """Windows per batch per worker."""
    seed: int = 0
    """Seed of initialisation and window order."""

    @model_validator(mode="after")
    def _windows_and_tasks(self) -> SequenceConfig:
        if self.hop > self.window:
            raise ConfigError(
                f"hop ({self.hop}) is longer than window ({self.window}): frames between "
                "windows would get no prediction; set hop <= window."
            )
        if not self.tasks:
            raise ConfigError("tasks is empty; name at least one of expr, au, va.")
        if self.clip and "expr" not in self.tasks:
            raise ConfigError("clip needs the expr task; add expr to tasks or set clip=false.")
        return self
