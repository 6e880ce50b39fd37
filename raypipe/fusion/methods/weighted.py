"""Weighted fusion (:mod:`raypipe.fusion.weight_search`): one weight per model, or per model
and class, found by a vectorised random and coordinate search on val."""

from __future__ import annotations

from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.fusion.weight_search import WeightSearch


def _search(context: FusionContext, per_class: bool) -> WeightSearch:
    config = context.config
    return WeightSearch(
        per_class=per_class,
        rules=tuple(config.rules),
        metric=config.metric,
        n_random=config.random_candidates,
        sweeps=config.coordinate_sweeps,
        extra=None if per_class else context.tune_candidates,
        seed=config.seed,
    )


@register_fusion(
    "weighted",
    uses_tune=True,
    description="one non-negative weight per model and a rule (sum or product)",
)
def weighted(context: FusionContext) -> WeightSearch:
    return _search(context, per_class=False)


@register_fusion(
    "weighted_class", description="one weight per model and class (a model trusted per class)"
)
def weighted_class(context: FusionContext) -> WeightSearch:
    return _search(context, per_class=True)
