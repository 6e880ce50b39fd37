"""The classifier zoo: one registry (:data:`CLASSIFIERS`) and one module per family, each
registering its classifiers; :func:`build_classifier` makes any of them a scikit-learn pipeline.

| name | classification | multilabel | regression |
|---|---|---|---|
| logreg | logistic regression (C) | one-vs-rest | ridge (alpha = 1 / C) |
| linsvc | linear SVC (C), sigmoid-calibrated probabilities | one-vs-rest | linear SVR (C) |
| rbfsvc | RBF SVC (C, gamma), sigmoid-calibrated probabilities | one-vs-rest | RBF SVR (C, gamma) |
| rf | random forest (n_estimators, max_depth, min_samples_leaf) | one-vs-rest | random forest |
| lightgbm | LightGBM (n_estimators, num_leaves, learning_rate) | one-vs-rest | LightGBM |
| mlp | torch MLP (hidden, dropout, lr, epochs) | sigmoid outputs | linear outputs |
| lstm, gru, attention, netvlad | torch sequence heads over 'seq' pooling | as mlp | as mlp |

A new classifier is one module that registers it (docs/extending.md), imported below.
"""

import importlib

from raypipe.classify.classifiers.build import build_classifier, predict_proba_full
from raypipe.classify.classifiers.registry import (
    CLASSIFIERS,
    BuildModel,
    ClassifierEntry,
    classifier,
    register_classifier,
    sequence_classifiers,
    trains_in_epochs,
)

#: Family modules of this package; each registers its classifiers when imported, in this
#: order (the order of CLASSIFIERS). A new family module is added here.
FAMILIES = ("linear", "svc", "forest", "boosting", "neural")
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")


def __getattr__(name: str) -> tuple[str, ...]:
    # Name tuples of earlier versions, derived from the registry when asked for (so they
    # include classifiers registered since the import).
    if name == "SEQUENCE_CLASSIFIERS":
        return tuple(sequence_classifiers())
    if name == "NEURAL_CLASSIFIERS":
        return tuple(n for n, entry in CLASSIFIERS.items() if entry.epochs)
    if name == "SKLEARN_CLASSIFIERS":
        return tuple(n for n, entry in CLASSIFIERS.items() if not entry.epochs)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLASSIFIERS",
    "FAMILIES",
    "BuildModel",
    "ClassifierEntry",
    "build_classifier",
    "classifier",
    "predict_proba_full",
    "register_classifier",
    "sequence_classifiers",
    "trains_in_epochs",
]
