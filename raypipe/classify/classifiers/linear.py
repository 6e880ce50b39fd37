"""Linear models: logistic regression (ridge for regression)."""

from __future__ import annotations

from typing import Any

from raypipe.classify.classifiers.registry import register_classifier


@register_classifier(
    "logreg",
    grid={"C": [0.01, 0.1, 1.0, 10.0]},
    description="logistic regression (C); regression: ridge, alpha = 1/C",
)
def logreg(params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
    c = float(params.get("C", 1.0))
    if task == "regression":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0 / c)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=c, max_iter=3000, class_weight="balanced" if balanced else None, random_state=seed
    )
