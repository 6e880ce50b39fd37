"""Building a registered classifier (:data:`CLASSIFIERS`) as a scikit-learn pipeline fitted
on the train split only.

Imputation and (for entries with ``standardise``) standardisation are pipeline steps, so their
statistics come from the training split alone and are applied unchanged to validation and test.
Torch heads (MLP, sequence heads) standardise inside
:class:`~raypipe.classify.neural_heads.NeuralHeadEstimator`. Models that do not fit multilabel
or multi-target regression themselves are wrapped one-vs-rest / one regressor per target.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from raypipe.classify.classifiers.registry import CLASSIFIERS


def build_classifier(
    name: str,
    params: dict[str, Any],
    seed: int = 0,
    task: str = "classification",
    balance: str = "class_weight",
) -> Pipeline:
    """A pipeline imputer -> [standard scaler ->] model ``name`` with ``params`` for ``task``.

    ``balance`` 'class_weight' weights classes inversely to their training frequency (for
    classification and per label for multilabel); 'oversample' and 'none' leave the model
    unweighted (oversampling happens on the training rows, see :mod:`raypipe.classify.fit`).
    An unknown ``name`` is an error listing the registered classifiers.
    """
    entry = CLASSIFIERS.get(name)
    model = entry.build(dict(params), task, balance == "class_weight", seed)
    if not entry.multi_output:
        if task == "multilabel":
            from sklearn.multiclass import OneVsRestClassifier

            model = OneVsRestClassifier(model)
        elif task == "regression":
            from sklearn.multioutput import MultiOutputRegressor

            model = MultiOutputRegressor(model)
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="mean", keep_empty_features=True))
    ]
    if entry.standardise:
        steps.append(("scale", StandardScaler()))
    steps.append(("model", model))
    return Pipeline(steps)


def predict_proba_full(pipeline: Pipeline, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) probabilities, with zero columns for classes absent from training."""
    probs = np.zeros((len(x), n_classes), dtype=np.float32)
    if len(x) == 0:
        return probs
    known = pipeline.classes_.astype(int)
    probs[:, known] = pipeline.predict_proba(x)
    return probs
