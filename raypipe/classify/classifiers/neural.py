"""Torch heads (:mod:`raypipe.classify.neural_heads`): an MLP over one vector per media and one
sequence head per kind of :data:`raypipe.models.head_kinds.SEQUENCE_HEADS` over window sequences.

They train in epochs (the search reports each, so ASHA can stop poor trials), standardise
inside the estimator and fit multilabel and regression targets themselves.
"""

from __future__ import annotations

from typing import Any

from raypipe.classify.classifiers.registry import BuildModel, register_classifier
from raypipe.models.head_kinds import SEQUENCE_HEADS

#: Parameters of every torch head that ``param_grid`` may set.
HEAD_PARAMS = frozenset({"hidden", "dropout", "lr", "weight_decay", "batch_size"})


def head_builder(kind: str) -> BuildModel:
    """Builds a :class:`~raypipe.classify.neural_heads.NeuralHeadEstimator` of ``kind``."""

    def build(params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
        from raypipe.classify.neural_heads import NeuralHeadEstimator

        known = NeuralHeadEstimator().get_params()
        settings = {k: v for k, v in params.items() if k in known and k != "kind"}
        return NeuralHeadEstimator(
            kind=kind, task=task, class_weight=balanced, seed=seed, **settings
        )

    return build


register_classifier(
    "mlp",
    grid={"hidden": [64, 128], "lr": [0.001, 0.003], "dropout": [0.2]},
    params=HEAD_PARAMS,
    epochs=True,
    standardise=False,
    multi_output=True,
    description="torch MLP, two hidden layers, Adam",
)(head_builder("mlp"))

for _kind, _spec in SEQUENCE_HEADS.items():
    register_classifier(
        _kind,
        grid={"hidden": [32, 64], "lr": [0.003]},
        params=HEAD_PARAMS,
        sequence=True,
        epochs=True,
        standardise=False,
        multi_output=True,
        description=f"sequence head: {_spec.description}",
    )(head_builder(_kind))
