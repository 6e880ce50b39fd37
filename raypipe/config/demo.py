"""`raypipe demo`: the whole path on generated data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig


class DemoConfig(StrictModel):
    """`raypipe demo`: generate a small labelled set, then extract, tune, fuse and report."""

    task: Literal["clips", "frames"] = "clips"
    """Which demo: 'clips' (7-class face+voice clips, one label per clip) or 'frames'
    (Aff-Wild2-shaped videos with per-frame expression, AU and valence/arousal labels)."""
    out: Path = Path("raypipe-demo")
    """Folder for the generated media, the store and the run."""
    clips_per_class: int = Field(default=12, ge=4)
    """Clips generated per class (7 classes; clips demo)."""
    videos: int = Field(default=24, ge=6)
    """Videos generated for the frames demo (half train, a quarter val, a quarter test)."""
    sample_fps: float = Field(default=5.0, gt=0, le=25)
    """Frames per second the frames demo samples from its 25 fps videos and scores, Hz."""
    recipes: dict[str, dict[str, Any]] = {}
    """Frames demo: settings of each frame recipe it runs (recipe name -> config fields, e.g.
    multitask: {teacher_epochs: 5}) over the demo's own (run, data, seed, ray)."""
    include_broken: bool = True
    """Add a truncated, an empty and a non-video .mp4 to show failed rows."""
    seed: int = 0
    """Seed of the data generator and of every model."""
    fusion_samples: int = Field(default=48, ge=1)
    """Weight vectors tried by the fusion search."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
