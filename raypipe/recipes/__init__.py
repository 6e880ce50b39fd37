"""Recipes of the published frame-level systems: frame-level training data (stored features
aligned with per-frame labels), the recipe registry (:data:`RECIPES`, one entry per
``raypipe recipe NAME``) and each recipe's plain-Python parts; their Ray wiring lives in
``raypipe/pipeline/``."""

from raypipe.recipes.registry import RECIPES, Recipe

__all__ = ["RECIPES", "Recipe"]
