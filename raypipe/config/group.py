"""`raypipe recipe group`: group-level emotion of photos (EmotiW 2018 group) from a stored
whole-image (global scene) feature and the stored features of every detected face."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig
from raypipe.errors import ConfigError

GroupMerge = Literal["mean", "attention", "context_attention"]


class GroupDataConfig(StrictModel):
    """Stored features of group images: one global scene vector per image and one vector per
    detected face; labels and splits from the store's manifest."""

    store: str | None = None
    """Feature store holding the frame rows (a path or a URI such as s3://bucket/store)."""
    scene_extractor: str = "face_backbone"
    """Frame-level extractor over whole frames (face_backbone with input: frame): the global
    scene branch; a media's rows are averaged into one vector."""
    face_extractor: str = "face_expression"
    """Frame-level extractor with one row per detected face (extracted with faces: all)."""
    versions: dict[str, str] = {}
    """Version per extractor name; an extractor not listed uses the store's current version."""
    max_faces: int = Field(default=16, ge=1)
    """Most faces kept per image (highest detector score first)."""
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    """Share of media without a split in the manifest put in val, by id hash."""

    @model_validator(mode="after")
    def _two_extractors(self) -> GroupDataConfig:
        if self.scene_extractor == self.face_extractor:
            raise ConfigError(
                f"data.scene_extractor and data.face_extractor are both "
                f"'{self.scene_extractor}'; the scene branch needs whole-frame rows and the "
                "face branch per-face rows: name two extractors."
            )
        return self


class GroupConfig(StrictModel):
    """Group-level emotion recipe (EmotiW 2018 group): scene branch + face branch merged by
    average or attention, one network per merge, an ensemble weighted on val."""

    run: str | None = None
    """Run folder for checkpoints, models and predictions (a path or s3://...)."""
    data: GroupDataConfig = GroupDataConfig()
    """Where the scene and face features, labels and splits come from."""
    label_space: str = "gaf"
    """Registered label space of the manifest's labels (gaf: Positive, Neutral, Negative)."""
    members: list[GroupMerge] = ["mean", "attention"]
    """Ensemble members, one network each, by how faces are merged: mean, attention (score
    from the face) or context_attention (score from the face and the scene feature)."""
    weight_step: float = Field(default=0.1, gt=0, le=1)
    """Step of the grid of ensemble weights (non-negative, summing to 1) searched on val."""
    hidden: int = Field(default=128, ge=4)
    """Width of the scene and face encoders."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout after each encoder."""
    epochs: int = Field(default=30, ge=1)
    """Training epochs per member (a re-run with more continues from the last one)."""
    batch_size: int = Field(default=32, ge=1)
    """Images per batch per worker."""
    lr: float = Field(default=1e-3, gt=0)
    """Learning rate (AdamW)."""
    weight_decay: float = Field(default=1e-4, ge=0)
    """AdamW weight decay."""
    seed: int = 0
    """Seed of initialisation and image order."""
    num_workers: int = Field(default=1, ge=1)
    """Ray Train workers per member (data-parallel)."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs reserved per worker."""
    use_gpu: bool = False
    """Train on one GPU per worker."""
    max_failures: int = Field(default=2, ge=0)
    """Worker-group restarts from the last checkpoint before a member's training fails."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="after")
    def _members(self) -> GroupConfig:
        if not self.members:
            raise ConfigError("members is empty; name at least one of mean, attention.")
        if len(set(self.members)) != len(self.members):
            raise ConfigError(f"members {self.members} repeats a merge; name each once.")
        steps = 1.0 / self.weight_step
        if abs(steps - round(steps)) > 1e-6:
            raise ConfigError(
                f"weight_step {self.weight_step} does not divide 1; use e.g. 0.1, 0.125 or 0.25."
            )
        return self
