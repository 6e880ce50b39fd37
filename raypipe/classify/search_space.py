"""The classifier search space: every (feature set, classifier, params) trial spec of a config.

Plain Python, so the space (and the random draw from it) can be checked without Ray. A spec is
``{"feature_set": '<extractor>[.<pooling>]', "classifier": name, "params": {...}}``; its key
(:func:`spec_key`) names it across runs, which is how a resumed search knows what is done.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from raypipe.classify.classifiers import CLASSIFIERS
from raypipe.classify.pooling import is_sequence_feature_set
from raypipe.config import TuneClassifiersConfig
from raypipe.errors import ConfigError


def param_grid(config: TuneClassifiersConfig, classifier: str) -> dict[str, list[Any]]:
    """Values tried for each parameter of ``classifier``: its registered grid, with the
    config's ``param_grid`` entries replacing any of them."""
    entry = CLASSIFIERS.get(classifier)
    grid = {k: list(v) for k, v in entry.grid.items()}
    overrides = config.param_grid.get(classifier, {})
    unknown = sorted(set(overrides) - entry.params)
    if unknown:
        raise ConfigError(
            f"param_grid.{classifier} has unknown parameter(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(entry.params))}."
        )
    empty = [k for k, v in overrides.items() if not v]
    if empty:
        raise ConfigError(f"param_grid.{classifier}.{empty[0]} must list at least one value.")
    grid.update({k: list(v) for k, v in overrides.items()})
    return grid


def _fixed_params(config: TuneClassifiersConfig, classifier: str) -> dict[str, Any]:
    """Parameters the search sets itself: epochs of epoch-trained classifiers, windows per
    media of sequence classifiers."""
    entry = CLASSIFIERS.get(classifier)
    fixed: dict[str, Any] = {}
    if entry.epochs:
        fixed["epochs"] = config.max_epochs
    if entry.sequence:
        fixed["steps"] = config.seq_steps
    return fixed


def _combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = sorted(grid)
    values = itertools.product(*(grid[name] for name in names))
    return [dict(zip(names, combination, strict=True)) for combination in values]


def trial_specs(config: TuneClassifiersConfig, feature_sets: Iterable[str]) -> list[dict[str, Any]]:
    """Every trial spec of the search: sequence heads on '.seq' feature sets, the other
    classifiers on the rest; torch heads train ``max_epochs`` epochs (sequence heads over
    ``seq_steps`` windows). A random search draws ``num_samples`` of them (by ``seed``); an
    optuna search picks its trials from all of them."""
    specs: list[dict[str, Any]] = []
    for feature_set in feature_sets:
        is_sequence = is_sequence_feature_set(feature_set)
        for classifier in config.classifiers:
            if CLASSIFIERS.get(classifier).sequence != is_sequence:
                continue
            for params in _combinations(param_grid(config, classifier)):
                params.update(_fixed_params(config, classifier))
                specs.append(
                    {"feature_set": feature_set, "classifier": classifier, "params": params}
                )
    if config.search == "random" and len(specs) > config.num_samples:
        picks = np.random.default_rng(config.seed).choice(
            len(specs), config.num_samples, replace=False
        )
        specs = [specs[i] for i in sorted(picks)]
    return specs


class OptunaSpace:
    """The search space as an Optuna define-by-run function (for Ray's ``OptunaSearch``):
    a feature set, then a classifier that reads it, then one value per parameter of that
    classifier, every choice categorical over the values :func:`trial_specs` would use.
    A class rather than a closure, so Ray can pickle the searcher's state."""

    def __init__(self, config: TuneClassifiersConfig, feature_sets: Iterable[str]) -> None:
        self.feature_sets = list(feature_sets)
        self.classifiers = list(config.classifiers)
        self.grids = {c: param_grid(config, c) for c in self.classifiers}

    def __call__(self, trial: Any) -> None:
        feature_set = trial.suggest_categorical("feature_set", self.feature_sets)
        kind = "seq" if is_sequence_feature_set(feature_set) else "flat"
        readers = [c for c in self.classifiers if CLASSIFIERS.get(c).sequence == (kind == "seq")]
        classifier = trial.suggest_categorical(f"classifier_{kind}", readers)
        for name, values in sorted(self.grids[classifier].items()):
            trial.suggest_categorical(f"{classifier}.{name}", values)


def spec_from_sample(config: TuneClassifiersConfig, sample: dict[str, Any]) -> dict[str, Any]:
    """The trial spec of a flat :class:`OptunaSpace` sample."""
    feature_set = sample["feature_set"]
    kind = "seq" if is_sequence_feature_set(feature_set) else "flat"
    classifier = sample[f"classifier_{kind}"]
    params = {
        key.split(".", 1)[1]: value
        for key, value in sample.items()
        if key.startswith(f"{classifier}.")
    }
    params.update(_fixed_params(config, classifier))
    return {"feature_set": feature_set, "classifier": classifier, "params": params}


def sample_from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The flat :class:`OptunaSpace` sample of a trial spec (inverse of
    :func:`spec_from_sample`), to warm-start a resumed search with finished trials."""
    classifier = spec["classifier"]
    kind = "seq" if is_sequence_feature_set(spec["feature_set"]) else "flat"
    sample = {"feature_set": spec["feature_set"], f"classifier_{kind}": classifier}
    for name, value in spec["params"].items():
        if name not in ("epochs", "steps"):
            sample[f"{classifier}.{name}"] = value
    return sample


def spec_key(spec: dict[str, Any]) -> str:
    """A short stable id of a spec (12 hex digits of the SHA-256 of its JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
