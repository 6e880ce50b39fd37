"""The fusion-method registry: every method ``raypipe fuse`` can fit is one
:class:`FusionEntry` of :data:`FUSION_METHODS`, registered by its module in this package with
:func:`register_fusion`.

An entry builds a :class:`~raypipe.fusion.cross_validation.FusionMethod` (``fit`` on labelled
val predictions) whose result is a
:class:`~raypipe.fusion.cross_validation.FittedFusion` (``predict``: apply it to any
predictions), from a :class:`FusionContext`: the fuse config, the members and the classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raypipe.errors import ConfigError
from raypipe.fusion.cross_validation import FusionMethod
from raypipe.registry import Registry


@dataclass
class FusionContext:
    """What a fusion method is built from.

    Attributes:
        config: the :class:`~raypipe.config.FuseConfig` (rules, metric, seed and each method's
            own settings).
        members: names of the fused models, in the order of the (M, N, C) probabilities.
        classes: class names, in the order of the last axis.
        tune_candidates: (K, M) per-model weight vectors Ray Tune tried (K = 0 without Tune);
            only methods registered with ``uses_tune`` get any.
        task: the members' task: 'classification', or 'multilabel' / 'regression' (then the
            entry's ``build_targets`` builds the method, fitted on (M, N, K) outputs and
            (N, K) targets; see :mod:`raypipe.fusion.targets`).
    """

    config: Any
    members: list[str]
    classes: list[str]
    tune_candidates: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    task: str = "classification"


@dataclass(frozen=True)
class FusionEntry:
    """A registered fusion method.

    Attributes:
        name: the name in configs (``methods: [name]``) and of the fused model
            (``fused.<name>``); the built method's ``name`` must be the same.
        build: ``(context) -> FusionMethod``; a bad setting raises
            :class:`~raypipe.errors.ConfigError`.
        check: ``(config) -> None``, run when the fuse config is validated (before any work);
            raises ValueError with one sentence on a missing or bad setting.
        uses_tune: fed the Ray Tune weight candidates (``raypipe fuse`` runs Ray Tune only when
            a configured method uses them and ``num_samples > 0``).
        description: one line for docs.
        build_targets: ``(context) -> method`` for multilabel and regression members (a
            :class:`~raypipe.fusion.targets.TargetWeightSearch`); None: the method fuses class
            probabilities only.
    """

    name: str
    build: Callable[[FusionContext], FusionMethod]
    check: Callable[[Any], None] | None = None
    uses_tune: bool = False
    description: str = ""
    build_targets: Callable[[FusionContext], Any] | None = None


#: Every fusion method by name, in registration order.
FUSION_METHODS: Registry[FusionEntry] = Registry("FUSION_METHODS", "fusion method")


def register_fusion(
    name: str,
    *,
    check: Callable[[Any], None] | None = None,
    uses_tune: bool = False,
    description: str = "",
    build_targets: Callable[[FusionContext], Any] | None = None,
) -> Callable[[Callable[[FusionContext], FusionMethod]], Callable[[FusionContext], FusionMethod]]:
    """Decorator registering a ``(context) -> FusionMethod`` builder as fusion method ``name``
    (with ``build_targets``, the method also fuses multilabel and regression members)."""

    def decorator(
        build: Callable[[FusionContext], FusionMethod],
    ) -> Callable[[FusionContext], FusionMethod]:
        entry = FusionEntry(name, build, check, uses_tune, description, build_targets)
        FUSION_METHODS.register(name, entry)
        return build

    return decorator


def build_fusion_methods(context: FusionContext, names: list[str]) -> list[FusionMethod]:
    """The methods ``names`` (in that order), built from ``context`` (for the task of
    ``context``)."""
    methods = []
    for name in names:
        entry = FUSION_METHODS.get(name)
        if context.task == "classification":
            method = entry.build(context)
        elif entry.build_targets is None:
            able = [n for n, e in FUSION_METHODS.items() if e.build_targets is not None]
            raise ConfigError(
                f"fusion method '{name}' combines class probabilities only, not "
                f"{context.task} members; set methods to some of: {', '.join(able)}."
            )
        else:
            method = entry.build_targets(context)
        if method.name != name:
            raise ValueError(f"fusion method '{name}' built a method named '{method.name}'")
        methods.append(method)
    return methods
