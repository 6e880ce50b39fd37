"""The recipe registry: every ``raypipe recipe NAME`` is one :class:`Recipe` of
:data:`RECIPES`, naming its config model and the function that runs it.

The function lives in ``raypipe/pipeline/`` (the only place that touches Ray) and is named by
its import path, imported only when the recipe runs, so reading the registry (``--help``,
config checks) starts nothing. A new recipe is its config module, its plain parts here, its
pipeline module, and one :func:`register_recipe` call below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raypipe.config.base import StrictModel
from raypipe.registry import Registry


@dataclass(frozen=True)
class Recipe:
    """One registered recipe.

    Attributes:
        name: the recipe's name (``raypipe recipe NAME``, ``jobs/configs/NAME.yaml``).
        config: its pydantic config model.
        runner: ``module:function`` of the function that runs it (``function(config)``).
        summary: one line for ``--help``.
        planner: ``module:function`` of its ``--dry-run`` plan (``function(config)`` returning
            a :class:`raypipe.pipeline.dry_run.DryRun`); None: the frame-level data's plan.
    """

    name: str
    config: type[StrictModel]
    runner: str
    summary: str
    planner: str | None = None

    def load_runner(self) -> Callable[[Any], Any]:
        """The function that runs this recipe (imported now)."""
        module, _, function = self.runner.partition(":")
        return getattr(importlib.import_module(module), function)

    def load_planner(self) -> Callable[[Any], Any] | None:
        """The function that plans its ``--dry-run`` (imported now), or None."""
        if self.planner is None:
            return None
        module, _, function = self.planner.partition(":")
        return getattr(importlib.import_module(module), function)


#: Recipes by name.
RECIPES: Registry[Recipe] = Registry("RECIPES", "recipe")


def register_recipe(
    name: str,
    config: type[StrictModel],
    runner: str,
    summary: str,
    planner: str | None = None,
) -> Recipe:
    """Register recipe ``name`` (see :class:`Recipe`) and return it."""
    return RECIPES.register(name, Recipe(name, config, runner, summary, planner))


def _register_builtins() -> None:
    from raypipe.config.multitask import MultitaskConfig

    register_recipe(
        "multitask",
        MultitaskConfig,
        "raypipe.pipeline.multitask:run_multitask",
        "Expression + AUs + valence/arousal over stored frame features with incomplete "
        "labels: ML-ROS, a teacher, then a distilled student; per-AU thresholds on val.",
    )
    from raypipe.config.sequence import SequenceConfig

    register_recipe(
        "sequence",
        SequenceConfig,
        "raypipe.pipeline.sequence:run_sequence",
        "Windows of visual, audio and text frame features: per-modality temporal "
        "convolutions, attention fusion, frame logits averaged over windows and per video.",
    )

    from raypipe.config.cascade import CascadeRecipeConfig

    register_recipe(
        "cascade",
        CascadeRecipeConfig,
        "raypipe.pipeline.cascade:run_cascade",
        "Coarse classifier over class groups, a fine one inside each group of 2+ classes, "
        "combined per class, then smoothed over a window chosen on val (ABAW3).",
    )

    from raypipe.config.group import GroupConfig

    register_recipe(
        "group",
        GroupConfig,
        "raypipe.pipeline.group:run_group",
        "Group photos: a global scene branch plus every detected face merged by mean or "
        "attention, one network per merge, an ensemble weighted on val (EmotiW 2018 group).",
        planner="raypipe.pipeline.group:plan_group",
    )


_register_builtins()
