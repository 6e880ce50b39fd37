"""The unweighted fusion: every member's outputs averaged with equal weights, nothing fitted
but multilabel thresholds. A baseline the fitted methods must beat in cross-validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.fusion.methods.weighted import WeightedFusion
from raypipe.fusion.targets import TargetWeightSearch


@dataclass
class MeanFusion:
    """Equal weights and the sum rule (the mean of the members' probabilities)."""

    @property
    def name(self) -> str:
        """Fused model name of this method."""
        return "mean"

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> WeightedFusion:
        """Equal weights over the (M, N, C) members; ``labels`` are not used."""
        return WeightedFusion(np.full(probs.shape[0], 1.0 / probs.shape[0]), "sum")


def build_target_mean(context: FusionContext) -> TargetWeightSearch:
    """Equal weights of multilabel or regression members (thresholds chosen on val)."""
    return TargetWeightSearch(context.task, equal=True)


@register_fusion(
    "mean",
    description="equal weights, the sum rule (every task)",
    build_targets=build_target_mean,
)
def build_mean(context: FusionContext) -> MeanFusion:
    return MeanFusion()
