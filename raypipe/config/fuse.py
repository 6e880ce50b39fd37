"""`raypipe fuse`: late-fusion methods, cascade and smoothing settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from raypipe.config.base import StrictModel
from raypipe.config.runtime import RayConfig
from raypipe.config.tracking import TrackingConfig


def _registered_fusion_method(name: str) -> str:
    # Checked against the live registry, so a method registered by a plugin is accepted too.
    from raypipe.fusion.methods import FUSION_METHODS

    if name not in FUSION_METHODS:
        raise ValueError(FUSION_METHODS.unknown_message(name))
    return name


#: A fusion method name registered in raypipe.fusion.methods.FUSION_METHODS.
FusionMethodName = Annotated[str, AfterValidator(_registered_fusion_method)]


class CascadeConfig(StrictModel):
    """Coarse-to-fine cascade: a coarse model picks the class group, a fine model the class."""

    groups: dict[str, list[str]] = {}
    """Class groups by name, e.g. {Negative: [Angry, Disgust, Fear, Sad]}; classes in no group
    stand alone. Needed when methods lists 'cascade'."""
    coarse: str | None = None
    """Member model deciding the group; unset: the member with the best group macro-F1 on val."""
    fine: str | None = None
    """Member model deciding inside a group; unset: the member best within groups on val."""


class SmoothingConfig(StrictModel):
    """Temporal smoothing of frame/window predictions before media-level decisions."""

    window_s: float = Field(default=1.0, ge=0)
    """Smoothing window (mean, median) or time constant (ema), seconds; 0: no smoothing."""
    method: Literal["mean", "median", "ema"] = "mean"
    """Centred moving mean or median, or exponential moving average."""
    decision: Literal["mean", "vote"] = "mean"
    """Media-level decision: mean of the smoothed probabilities, or share of votes per class."""


class FuseConfig(StrictModel):
    """`raypipe fuse`: late fusion of stored predictions, fitted on val and chosen by CV."""

    run: str | Path | None = None
    """Run folder written by `raypipe tune-classifiers` (a local path or a URI)."""
    models: list[str] | None = None
    """Models to fuse; unset: the best model of each modality (every stored model when the run
    has no trials)."""
    methods: list[FusionMethodName] = ["weighted", "weighted_class", "greedy", "stacking_logreg"]
    """Fusion methods fitted (registered in raypipe.fusion.methods.FUSION_METHODS: weighted,
    weighted_class, mean, greedy, stacking_logreg, stacking_svm, cascade); each is written as
    fused.<method>, and the one with the best cross-validated val score is marked selected.
    Multilabel/regression members: stored as fused.<task>.<method> with their own selection;
    listed methods that fuse class probabilities only are skipped (one log line), and unset
    means weighted and mean (per-target weights)."""
    rules: list[Literal["sum", "product"]] = ["sum", "product"]
    """Fusion rules the weight searches try (weighted mean of probabilities, or of logs)."""
    num_samples: int = Field(default=48, ge=0)
    """Per-model weight vectors Ray Tune tries on the cluster; they join the vectorised
    search's candidates for 'weighted'. 0: no Ray Tune."""
    random_candidates: int = Field(default=20000, ge=0)
    """Random weight vectors the vectorised search scores per rule (and per CV fold)."""
    coordinate_sweeps: int = Field(default=3, ge=0)
    """Coordinate-search sweeps refining the best random weights."""
    greedy_rounds: int = Field(default=20, ge=1)
    """Rounds of greedy ensemble selection (models added with replacement)."""
    stacking_c: list[float] = [0.01, 0.1, 1.0, 10.0]
    """Inverse regularisation strengths of the stacking meta-classifier, chosen by CV."""
    cv_folds: int = Field(default=3, ge=2)
    """Folds of the val media for cross-validating each fusion method."""
    cascade: CascadeConfig = CascadeConfig()
    """Class groups and members of the 'cascade' method."""
    smoothing: SmoothingConfig = SmoothingConfig()
    """Smoothing of members stored per frame/window (several rows per media, with start_s)."""
    frame_max_gap_s: float | None = Field(default=1.0, gt=0)
    """Multilabel/regression members stored per frame: a member's output counts at a fused
    row only if its own nearest row of the media lies at most this many seconds away; farther,
    the member is missing there (left out and the weights renormalised). null: no limit."""
    metric: Literal["macro_f1", "accuracy", "uar"] = "macro_f1"
    """Validation metric the fusions maximise and the selection compares."""
    seed: int = 0
    """Random seed of the searches and of the CV folds."""
    tracking: TrackingConfig = TrackingConfig()
    """Experiment tracking (MLflow, TensorBoard, W&B); off by default."""
    ray: RayConfig = RayConfig()
    """Ray connection."""

    @model_validator(mode="after")
    def _check(self) -> FuseConfig:
        from raypipe.fusion.methods import FUSION_METHODS

        if not self.methods:
            raise ValueError("methods must list at least one fusion method")
        for name in dict.fromkeys(self.methods):
            check = FUSION_METHODS.get(name).check
            if check is not None:
                check(self)  # a method's own settings, e.g. cascade.groups for 'cascade'
        return self
