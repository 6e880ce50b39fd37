"""Greedy ensemble selection with replacement (:mod:`raypipe.fusion.selection`)."""

from __future__ import annotations

from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.fusion.selection import GreedySelection


@register_fusion(
    "greedy", description="greedy ensemble selection with replacement; weights are pick counts"
)
def greedy(context: FusionContext) -> GreedySelection:
    config = context.config
    return GreedySelection(config.greedy_rounds, tuple(config.rules), config.metric)
