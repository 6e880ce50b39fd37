"""The cascade recipe's plain parts (ABAW3 coarse-to-fine with smooth predicting, over stored
frame features): the class partition, each stage's training frames and labels, fitting one
stage (a classifier of :data:`raypipe.classify.classifiers.CLASSIFIERS`), the combination of
the coarse and fine outputs into per-class probabilities
(:func:`raypipe.models.cascade_net.combine_cascade`, once per fine group) and the fitted
cascade as one frame-level estimator. ``raypipe/pipeline/cascade.py`` fits the stages in
Ray tasks; smoothing is :mod:`raypipe.fusion.frame_smoothing`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from raypipe.classify.classifiers import CLASSIFIERS, build_classifier, predict_proba_full
from raypipe.errors import ConfigError
from raypipe.models.cascade_net import ClassGroups, combine_cascade

#: Name of the coarse stage; fine stages are named ``fine.<group>``.
COARSE = "coarse"


def partition(classes: Sequence[str], groups: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Every class in one group: the configured ``groups`` (in their order, members in their
    order), then each class in none as a group of its own named after it (in class order).

    Raises ConfigError naming a member that is not a class, a class in two groups, an empty
    group or a group named like a left-over class."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name, members in groups.items():
        if not members:
            raise ConfigError(f"groups.{name} is empty; list its classes or drop it.")
        for member in members:
            if member not in classes:
                raise ConfigError(
                    f"groups.{name} names '{member}', which is not a class ({', '.join(classes)}); "
                    "use the label space's class names."
                )
            if member in seen:
                raise ConfigError(f"groups: class '{member}' is in two groups; keep it in one.")
            seen.add(member)
        out[name] = list(members)
    for c in classes:
        if c not in seen:
            if c in out:
                raise ConfigError(f"groups: '{c}' names a group and a class left alone; rename it.")
            out[c] = [c]
    return out


def fine_groups(groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The groups a fine model separates: those with 2 or more classes, in order."""
    return [name for name, members in groups.items() if len(members) >= 2]


def stage_labels(
    stage: str, labels: np.ndarray, classes: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``labels`` (class indices, -1 unlabelled) a stage learns from and their
    labels in the stage's order: every labelled row with its group index (``coarse``), or the
    rows of group ``g``'s classes with their position in the group (``fine.g``)."""
    labels = np.asarray(labels, np.int64)
    names = list(groups)
    if stage == COARSE:
        lookup = np.full(len(classes), -1, np.int64)
        for g, members in enumerate(groups.values()):
            lookup[[list(classes).index(c) for c in members]] = g
        rows = np.flatnonzero(labels >= 0)
        return rows, lookup[labels[rows]]
    group = stage.removeprefix("fine.")
    if not stage.startswith("fine.") or group not in names:
        raise ValueError(f"unknown cascade stage '{stage}' (coarse or fine.<group>)")
    members = [list(classes).index(c) for c in groups[group]]
    rows = np.flatnonzero(np.isin(labels, members))
    position = {c: k for k, c in enumerate(members)}
    return rows, np.asarray([position[int(v)] for v in labels[rows]], np.int64)


def check_classifier(name: str, field: str) -> None:
    """Refuse a classifier that cannot read one vector per frame (a sequence head)."""
    if CLASSIFIERS.get(name).sequence:
        raise ConfigError(
            f"{field}.classifier '{name}' reads window sequences; give one over single "
            "vectors (logreg, linsvc, rbfsvc, rf, lightgbm, mlp)."
        )


def fit_stage(
    x: np.ndarray,
    y: np.ndarray,
    classifier: str,
    params: Mapping[str, Any],
    seed: int = 0,
    balance: str = "class_weight",
) -> Any:
    """One stage fitted on features (N, D) and stage labels (N,): the classifier's pipeline
    (:func:`raypipe.classify.classifiers.build_classifier`), or with fewer than two distinct
    labels a prior (scikit-learn's DummyClassifier: the label seen, at probability 1).
    Raises ValueError when ``y`` is empty."""
    if len(y) == 0:
        raise ValueError("no training frame for this stage")
    if len(np.unique(y)) < 2:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy="prior").fit(x, y)
    pipeline = build_classifier(classifier, dict(params), seed, "classification", balance)
    return pipeline.fit(np.asarray(x, np.float32), np.asarray(y, np.int64))


def combine(
    coarse: np.ndarray,
    fine: Mapping[str, np.ndarray],
    classes: Sequence[str],
    groups: Mapping[str, Sequence[str]],
) -> np.ndarray:
    """Per-class probabilities (N, C) from the coarse model's group probabilities (N, G, in
    ``groups``' order) and each fine group's class probabilities (N, size of the group, in
    the group's member order): a class of a fine group gets its group's probability times
    the fine model's for it; a group without a fine model shares its probability equally
    (a class alone keeps it). Each fine group goes through
    :func:`~raypipe.models.cascade_net.combine_cascade`."""
    classes = list(classes)
    coarse_t = torch.as_tensor(np.array(coarse, np.float64))
    if not fine:
        # combine_cascade needs a fine group; every group shares its mass equally.
        out = np.zeros((len(coarse), len(classes)))
        for g, members in enumerate(groups.values()):
            out[:, [classes.index(c) for c in members]] = coarse[:, [g]] / len(members)
        return out.astype(np.float32)
    out = None
    for name, probs in fine.items():
        layout = ClassGroups.from_config(classes, groups, name)
        part = combine_cascade(coarse_t, torch.as_tensor(np.array(probs, np.float64)), layout)
        if out is None:
            out = part.numpy().copy()
        else:
            members = [classes.index(c) for c in groups[name]]
            out[:, members] = part.numpy()[:, members]
    assert out is not None
    return out.astype(np.float32)


class CascadeFrameModel:
    """A fitted cascade as a frame-level estimator over raw stored features (N, D), in the
    shape run-folder model records hold (``record["pipeline"]``): ``predict_proba`` gives
    per-class probabilities (N, C) over ``classes_``, ``predict`` the class index.

    Attributes:
        classes: class names, in label order.
        groups: group name -> member classes (coarse label order, member order = fine order).
        coarse: the coarse stage (scikit-learn estimator over groups).
        fine: fine group name -> its fitted stage, or None (no training frame: equal shares).
    """

    def __init__(
        self,
        classes: Sequence[str],
        groups: Mapping[str, Sequence[str]],
        coarse: Any,
        fine: Mapping[str, Any],
    ) -> None:
        self.classes = [str(c) for c in classes]
        self.groups = {str(k): [str(c) for c in v] for k, v in groups.items()}
        self.coarse = coarse
        self.fine = dict(fine)
        self.classes_ = np.arange(len(self.classes))

    def stage_outputs(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The coarse group probabilities (N, G) and each fitted fine group's (N, size)."""
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        coarse = predict_proba_full(self.coarse, x, len(self.groups))
        fine = {
            name: predict_proba_full(model, x, len(self.groups[name]))
            for name, model in self.fine.items()
            if model is not None
        }
        return coarse, fine

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, C) per-class probabilities."""
        coarse, fine = self.stage_outputs(x)
        return combine(coarse, fine, self.classes, self.groups)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) class indices."""
        return self.predict_proba(x).argmax(1)
