"""Fusion methods: one registry (:data:`FUSION_METHODS`) and one module per method, each
registering a builder of a :class:`~raypipe.fusion.cross_validation.FusionMethod` (``fit`` on
val predictions -> a fitted fusion whose ``predict`` applies it). A new method is one module
that registers it (docs/extending.md), listed in :data:`METHOD_MODULES`.
"""

import importlib

from raypipe.fusion.methods.registry import (
    FUSION_METHODS,
    FusionContext,
    FusionEntry,
    build_fusion_methods,
    register_fusion,
)

#: Method modules of this package; each registers its methods when imported, in this order
#: (the order of FUSION_METHODS).
METHOD_MODULES = ("weighted", "mean", "greedy", "stacking", "cascade")
for _module in METHOD_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "FUSION_METHODS",
    "METHOD_MODULES",
    "FusionContext",
    "FusionEntry",
    "build_fusion_methods",
    "register_fusion",
]
