"""Random forests."""

from __future__ import annotations

from typing import Any

from raypipe.classify.classifiers.registry import register_classifier


@register_classifier(
    "rf",
    grid={"n_estimators": [200], "max_depth": [None, 8], "min_samples_leaf": [1, 3]},
    description="random forest (n_estimators, max_depth, min_samples_leaf)",
)
def random_forest(params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
    settings = {
        "n_estimators": int(params.get("n_estimators", 200)),
        "max_depth": params.get("max_depth"),
        "min_samples_leaf": int(params.get("min_samples_leaf", 1)),
        "random_state": seed,
        "n_jobs": 1,
    }
    if task == "regression":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(**settings)
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(class_weight="balanced" if balanced else None, **settings)
