"""Coarse-to-fine cascade: a coarse model decides the class group, a fine model the class
inside a group.

Class groups come from config (e.g. ABAW's ``Negative = Anger, Disgust, Fear, Sadness``);
classes in no group form groups of their own. With a coarse model's probabilities ``q`` and a
fine model's ``f`` the cascade gives, for a class ``c`` in group ``g``::

    p(c) = sum(q[g]) * f[c] / sum(f[g])

so the coarse model sets each group's mass and the fine model shares it among the group's
classes (a class alone in its group keeps the coarse mass). When the coarse and fine models
are not named, fitting picks them on the labelled media: the coarse one by macro-F1 over
groups, the fine one by accuracy among the classes of each media's true group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raypipe.errors import ConfigError
from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.metrics import classification_scores


def group_index(groups: Mapping[str, Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """(C,) group number of each class; configured groups first, then one group per class
    left over. Raises ValueError naming an unknown or twice-grouped class."""
    index = np.full(len(classes), -1, dtype=int)
    for g, (name, members) in enumerate(groups.items()):
        for member in members:
            if member not in classes:
                raise ValueError(
                    f"class group '{name}' names '{member}', which is not a class "
                    f"(classes: {', '.join(classes)})"
                )
            c = list(classes).index(member)
            if index[c] >= 0:
                raise ValueError(f"class '{member}' is in more than one class group")
            index[c] = g
    next_group = len(groups)
    for c in range(len(classes)):
        if index[c] < 0:
            index[c] = next_group
            next_group += 1
    return index


def cascade(coarse: np.ndarray, fine: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N, C) cascade of (N, C) coarse and fine probabilities with (C,) group numbers.

    NaN rows (a model without a prediction) count as uniform.
    """
    n_classes = coarse.shape[1]
    coarse = np.where(np.isnan(coarse), 1.0 / n_classes, coarse)
    fine = np.where(np.isnan(fine), 1.0 / n_classes, fine)
    onehot = np.eye(groups.max() + 1)[groups]  # (C, G)
    group_mass = coarse @ onehot  # (N, G)
    fine_mass = fine @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        share = fine / fine_mass[:, groups]
    # A group where the fine model gives nothing: share the mass equally.
    size = onehot.sum(axis=0)[groups]
    share = np.where(np.isfinite(share), share, 1.0 / size)
    fused = group_mass[:, groups] * share
    return (fused / fused.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class FittedCascade:
    """The cascade's group numbers and the members chosen as coarse and fine models."""

    groups: np.ndarray
    coarse: int
    fine: int

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """(N, C) cascade of (M, N, C) member probabilities."""
        return cascade(probs[self.coarse], probs[self.fine], self.groups)

    def describe(self, members: list[str]) -> dict[str, Any]:
        """Coarse and fine members and the group of every class."""
        return {
            "coarse": members[self.coarse],
            "fine": members[self.fine],
            "groups": self.groups.tolist(),
        }


@dataclass
class CascadeFusion:
    """Coarse-to-fine cascade over two members.

    Attributes:
        groups: (C,) group number per class (see :func:`group_index`).
        coarse: member index of the coarse model; None: chosen when fitting.
        fine: member index of the fine model; None: chosen when fitting.
    """

    groups: np.ndarray
    coarse: int | None = None
    fine: int | None = None

    @property
    def name(self) -> str:
        """Fused model name of this method."""
        return "cascade"

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> FittedCascade:
        """Choose the coarse and fine members on (M, N, C) probabilities of labelled media."""
        labels = np.asarray(labels, dtype=int)
        n_groups = int(self.groups.max()) + 1
        onehot = np.eye(n_groups)[self.groups]  # (C, G)
        filled = np.where(np.isnan(probs), 0.0, probs)
        coarse = self.coarse
        if coarse is None:
            true_groups = self.groups[labels]
            scores = [
                classification_scores(true_groups, (p @ onehot).argmax(axis=1), n_groups)[
                    "macro_f1"
                ]
                for p in filled
            ]
            coarse = int(np.argmax(scores))
        fine = self.fine
        if fine is None:
            # Within-group accuracy: only the classes of the media's true group compete.
            allowed = self.groups[None, :] == self.groups[labels][:, None]  # (N, C)
            scores = [
                float(np.mean(np.where(allowed, p, -1.0).argmax(axis=1) == labels)) for p in filled
            ]
            fine = int(np.argmax(scores))
        return FittedCascade(self.groups, coarse, fine)


# -- registration ----------------------------------------------------------------------
def _check(config: Any) -> None:
    if not config.cascade.groups:
        raise ValueError(
            "methods lists 'cascade' but cascade.groups is empty; set e.g. "
            "cascade.groups={Negative: [Angry, Disgust, Fear, Sad]}"
        )


@register_fusion(
    "cascade",
    check=_check,
    description="coarse member picks the class group, fine member the class within it",
)
def build_cascade(context: FusionContext) -> CascadeFusion:
    config, members = context.config, context.members
    try:
        groups = group_index(config.cascade.groups, context.classes)
    except ValueError as exc:
        raise ConfigError(f"cascade.groups: {exc}; fix the fuse config.") from None
    chosen = []
    for field in ("coarse", "fine"):
        model = getattr(config.cascade, field)
        if model is not None and model not in members:
            raise ConfigError(
                f"cascade.{field} '{model}' is not one of the fused models "
                f"({', '.join(members)}); name one of them or leave it unset."
            )
        chosen.append(None if model is None else members.index(model))
    return CascadeFusion(groups, chosen[0], chosen[1])
