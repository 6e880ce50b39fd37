"""`raypipe predict`: a run's models applied to new media."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig


class PredictConfig(StrictModel):
    """`raypipe predict`: a run's fitted models and fusion applied to new media."""

    run: str | Path | None = None
    """Run folder holding fitted models (tune-classifiers) and fusions (fuse), a local path or
    a URI."""
    manifest: str | Path | None = None
    """Manifest of the new media (media_id, path; label and split optional), a local path or
    a URI such as s3://bucket/m.csv."""
    format: Literal["csv", "abaw-expr", "abaw-au", "abaw-va"] = "csv"
    """What is written: csv (one row per media from the fused model: media_id, label, one
    probability column per class, scored_by, missing, note) or abaw-expr, abaw-au, abaw-va
    (one ABAW annotation file per video from the run's frame-level models of that task: a
    header line, then one line per native video frame, with scoring.csv beside them)."""
    smooth: bool = True
    """abaw formats: smooth each frame-level model's outputs over the window chosen on val
    (the run's fused.smooth.<model> record, with its AU thresholds) where the run has one."""
    out: str | Path | None = None
    """Where it is written, a local path or a URI: the CSV (unset: <run>/predict/
    submission.csv), or for abaw formats the folder of files (unset: <run>/predict/<format>)."""
    store: str | None = None
    """Feature store for the new media's features (only missing ones are extracted); unset:
    <run>/predict/store."""
    fusion: str | None = None
    """Fused model applied (e.g. fused.weighted); unset: the one `raypipe fuse` selected."""
    extract: Path | None = None
    """Extract YAML of the training store, when its extractors' settings cannot be read back
    from the store (predict then says so); unset: the training store's recorded settings."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
