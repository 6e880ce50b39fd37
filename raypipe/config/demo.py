"""`raypipe demo`: the whole path on generated data."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig


class DemoConfig(StrictModel):
    """`raypipe demo`: generate a small labelled set, then extract, tune, fuse and report."""

    out: Path = Path("raypipe-demo")
    """Folder for the generated media, the store and the run."""
    clips_per_class: int = Field(default=12, ge=4)
    """Clips generated per class (7 classes)."""
    include_broken: bool = True
    """Add a truncated, an empty and a non-video .mp4 to show failed rows."""
    seed: int = 0
    """Seed of the data generator and of every model."""
    fusion_samples: int = Field(default=48, ge=1)
    """Weight vectors tried by the fusion search."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
