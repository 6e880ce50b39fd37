"""Coarse-to-fine cascade (:mod:`raypipe.fusion.cascade`): a coarse member decides the class
group, a fine member the class within it."""

from __future__ import annotations

from typing import Any

from raypipe.errors import ConfigError
from raypipe.fusion.cascade import CascadeFusion, group_index
from raypipe.fusion.methods.registry import FusionContext, register_fusion


def _check(config: Any) -> None:
    if not config.cascade.groups:
        raise ValueError(
            "methods lists 'cascade' but cascade.groups is empty; set e.g. "
            "cascade.groups={Negative: [Angry, Disgust, Fear, Sad]}"
        )


@register_fusion(
    "cascade",
    check=_check,
    description="coarse member picks the class group, fine member the class within it",
)
def cascade(context: FusionContext) -> CascadeFusion:
    config, members = context.config, context.members
    try:
        groups = group_index(config.cascade.groups, context.classes)
    except ValueError as exc:
        raise ConfigError(f"cascade.groups: {exc}; fix the fuse config.") from None
    chosen = []
    for field in ("coarse", "fine"):
        model = getattr(config.cascade, field)
        if model is not None and model not in members:
            raise ConfigError(
                f"cascade.{field} '{model}' is not one of the fused models "
                f"({', '.join(members)}); name one of them or leave it unset."
            )
        chosen.append(None if model is None else members.index(model))
    return CascadeFusion(groups, chosen[0], chosen[1])
