"""Stacking (:mod:`raypipe.fusion.stacking`): a meta-classifier over the members'
probabilities and presence flags, its C chosen by CV on val."""

from __future__ import annotations

from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.fusion.stacking import META_CLASSIFIERS, StackingFusion


def _stacking(meta: str) -> None:
    def build(context: FusionContext) -> StackingFusion:
        config = context.config
        return StackingFusion(
            meta=meta, c_grid=tuple(config.stacking_c), folds=config.cv_folds, seed=config.seed
        )

    description = f"stacking with a {meta} meta-classifier"
    register_fusion(f"stacking_{meta}", description=description)(build)


for _meta in META_CLASSIFIERS:
    _stacking(_meta)
