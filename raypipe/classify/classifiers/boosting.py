"""Gradient boosting: LightGBM."""

from __future__ import annotations

from typing import Any

from raypipe.classify.classifiers.registry import register_classifier


def lightgbm_params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """LightGBM settings of a trial's ``params`` (the searched ones) and fixed subsampling."""
    return {
        "n_estimators": int(params.get("n_estimators", 200)),
        "num_leaves": int(params.get("num_leaves", 15)),
        "learning_rate": float(params.get("learning_rate", 0.05)),
        "min_child_samples": int(params.get("min_child_samples", 3)),
        "subsample": 0.9,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "random_state": seed,
        # One thread, and LightGBM's deterministic mode (which wants a fixed histogram
        # layout), so the same data and seed always grow the same trees.
        "n_jobs": 1,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


@register_classifier(
    "lightgbm",
    grid={"num_leaves": [4, 15], "n_estimators": [200]},
    params={"n_estimators", "num_leaves", "learning_rate", "min_child_samples"},
    description="LightGBM (n_estimators, num_leaves, learning_rate, min_child_samples)",
)
def lightgbm_model(params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
    if task == "regression":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(**lightgbm_params(params, seed))
    from lightgbm import LGBMClassifier

    return LGBMClassifier(
        class_weight="balanced" if balanced else None, **lightgbm_params(params, seed)
    )
