"""The classifier registry: every classifier the search can try is one :class:`ClassifierEntry`
of :data:`CLASSIFIERS`, registered by its family's module (linear, svc, forest, boosting,
neural) with :func:`register_classifier`.

An entry says how to build the model and everything the rest of the pipeline used to keep in
name lists: whether it reads window sequences, whether it trains in epochs (ASHA, per-epoch
reports), its default parameter grid and the parameters ``param_grid`` may set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from raypipe.registry import Registry


class BuildModel(Protocol):
    """Builds an unfitted model (a scikit-learn style estimator) for one trial."""

    def __call__(self, params: dict[str, Any], task: str, balanced: bool, seed: int) -> Any:
        """``params``: the trial's parameter values (names of the entry's ``params``, plus
        'epochs' for epoch-trained and 'steps' for sequence classifiers); ``task``:
        'classification', 'multilabel' or 'regression'; ``balanced``: weight classes
        inversely to their training frequency; ``seed``: the model's random seed."""
        ...


@dataclass(frozen=True)
class ClassifierEntry:
    """A registered classifier.

    Attributes:
        name: the name in configs (``classifiers: [name]``) and model names
            (``<feature_set>.<name>``).
        build: see :class:`BuildModel`.
        grid: built-in values tried per parameter; ``param_grid: {name: {param: [...]}}``
            replaces any of them.
        params: parameters ``param_grid`` may set (default: the grid's).
        sequence: reads window sequences (feature sets of a pooling registered with
            ``sequence=True``, i.e. 'seq') and only those; other classifiers read the rest.
        epochs: trains in epochs: ``fit(x, y, on_epoch=callback)`` calls back after every
            epoch (the search reports each, so ASHA can stop it), and the search sets its
            'epochs' parameter to ``max_epochs``.
        standardise: the pipeline standardises features (train statistics) before the model.
        multi_output: the model fits multilabel (N, L) and multi-target regression (N, K)
            targets itself; otherwise it is wrapped one-vs-rest / one regressor per target.
        description: one line for docs and help.
    """

    name: str
    build: BuildModel
    grid: Mapping[str, list[Any]] = field(default_factory=dict)
    params: frozenset[str] = frozenset()
    sequence: bool = False
    epochs: bool = False
    standardise: bool = True
    multi_output: bool = False
    description: str = ""


#: Every classifier by name, in registration order.
CLASSIFIERS: Registry[ClassifierEntry] = Registry("CLASSIFIERS", "classifier")


def register_classifier(
    name: str,
    *,
    grid: Mapping[str, list[Any]],
    params: set[str] | frozenset[str] | None = None,
    sequence: bool = False,
    epochs: bool = False,
    standardise: bool = True,
    multi_output: bool = False,
    description: str = "",
) -> Callable[[BuildModel], BuildModel]:
    """Decorator registering a :class:`BuildModel` function as classifier ``name``."""

    def decorator(build: BuildModel) -> BuildModel:
        known = frozenset(params if params is not None else grid)
        missing = sorted(set(grid) - known)
        if missing:
            raise ValueError(f"classifier '{name}': grid parameter(s) {missing} not in params")
        CLASSIFIERS.register(
            name,
            ClassifierEntry(
                name=name,
                build=build,
                grid={k: list(v) for k, v in grid.items()},
                params=known,
                sequence=sequence,
                epochs=epochs,
                standardise=standardise,
                multi_output=multi_output,
                description=description,
            ),
        )
        return build

    return decorator


def classifier(name: str) -> ClassifierEntry:
    """The entry of ``name`` (an error naming the registered classifiers when unknown)."""
    return CLASSIFIERS.get(name)


def sequence_classifiers() -> list[str]:
    """Names of the classifiers that read window sequences."""
    return [name for name, entry in CLASSIFIERS.items() if entry.sequence]


def trains_in_epochs(name: str) -> bool:
    """Whether classifier ``name`` trains in epochs (per-epoch reports, ASHA)."""
    return CLASSIFIERS.get(name).epochs
