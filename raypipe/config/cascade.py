"""`raypipe recipe cascade`: a coarse classifier over groups of expression classes, a fine
classifier inside each group of several classes, combined per class, then smoothed over time
(ABAW3 coarse-to-fine with smooth predicting)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from raypipe.config.base import StrictModel
from raypipe.config.classify import ClassifierName
from raypipe.config.frames import FrameDataConfig
from raypipe.config.runtime import RayConfig


class CascadeStageConfig(StrictModel):
    """One stage of the cascade: a classifier of the registry and its parameters."""

    classifier: ClassifierName = "logreg"
    """Classifier (raypipe.classify.classifiers.CLASSIFIERS) over one feature vector per frame:
    logreg, linsvc, rbfsvc, rf, lightgbm or mlp."""
    params: dict[str, Any] = {}
    """Its parameters, e.g. {C: 1.0} for logreg; unset ones take the classifier's defaults."""


class CascadeRecipeConfig(StrictModel):
    """Coarse-to-fine cascade with smoothing (ABAW3) over stored frame features."""

    run: str | None = None
    """Run folder for fitted stages, models and frame-level predictions (a path or s3://...)."""
    data: FrameDataConfig = FrameDataConfig()
    """Where frame features and labels come from."""
    label_space: Literal["abaw_expr", "abaw2020_expr"] = "abaw_expr"
    """Expression classes when labels come from a table (an annotation folder names its own)."""
    groups: dict[str, list[str]] = {"Negative": ["Anger", "Disgust", "Fear", "Sadness"]}
    """Class groups by name; each class left out is a group of its own. The coarse model
    decides the group, a fine model the class inside each group of 2+ classes."""
    coarse: CascadeStageConfig = CascadeStageConfig()
    """The coarse model (over groups)."""
    fine: CascadeStageConfig = CascadeStageConfig()
    """The fine models (one per group of 2+ classes, trained on that group's frames)."""
    balance: Literal["class_weight", "none"] = "class_weight"
    """Weight classes inversely to their training frequency, or not."""
    smoothing_windows: list[float] = Field(
        default=[0.0, 0.4, 0.8, 1.2, 1.6, 2.4, 3.2, 4.8], min_length=1
    )
    """Candidate smoothing windows, seconds; the one with the best val macro-F1 is kept (0:
    no smoothing)."""
    seed: int = 0
    """Seed of the classifiers."""
    cpus_per_task: float = Field(default=1.0, gt=0)
    """CPUs reserved by each stage's fitting task."""
    max_retries: int = Field(default=2, ge=0)
    """Times Ray re-runs a stage's fit whose worker died before it fails the recipe."""
    ray: RayConfig = RayConfig()
    """Ray connection."""
