"""Coarse-to-fine cascade (ABAW3): a coarse model over groups of classes and a fine model that
separates the classes inside one group; their outputs combine into per-class probabilities.

Class groups are data (from a config), e.g. ``{"positive": ["Happy", "Surprise"], "negative":
["Angry", "Disgust", "Fear", "Sad"], "neutral": ["Neutral"]}`` with the fine model trained only
on the "negative" group's samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from raypipe.errors import ConfigError


@dataclass(frozen=True)
class ClassGroups:
    """A partition of the classes into named groups.

    Attributes:
        classes: all class names, in label order.
        groups: group name -> its classes (each class in exactly one group).
        fine_group: the group the fine model separates.
    """

    classes: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    fine_group: str

    @classmethod
    def from_config(
        cls, classes: Sequence[str], groups: Mapping[str, Sequence[str]], fine_group: str
    ) -> ClassGroups:
        """Check that ``groups`` partitions ``classes`` and names ``fine_group``."""
        listed = [c for members in groups.values() for c in members]
        if sorted(listed) != sorted(classes):
            raise ConfigError(
                f"cascade groups must hold every class exactly once; classes {list(classes)}, "
                f"groups hold {listed}."
            )
        if fine_group not in groups or len(groups[fine_group]) < 2:
            raise ConfigError(
                f"cascade fine_group '{fine_group}' must be one of the groups with 2+ classes."
            )
        return cls(
            tuple(classes),
            tuple((name, tuple(members)) for name, members in groups.items()),
            fine_group,
        )

    @property
    def names(self) -> list[str]:
        """Group names, in coarse label order."""
        return [name for name, _ in self.groups]

    def coarse_labels(self, labels: np.ndarray) -> np.ndarray:
        """Group index of each class index."""
        lookup = {
            self.classes.index(c): g for g, (_, members) in enumerate(self.groups) for c in members
        }
        return np.asarray([lookup[int(label)] for label in labels], np.int64)

    def fine_members(self) -> list[int]:
        """Class indices of the fine group, in fine label order."""
        return [self.classes.index(c) for c in dict(self.groups)[self.fine_group]]

    def fine_subset(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of samples in the fine group and their fine label indices."""
        members = self.fine_members()
        keep = np.flatnonzero(np.isin(labels, members))
        return keep, np.asarray([members.index(int(v)) for v in labels[keep]], np.int64)


def combine_cascade(
    coarse_probs: torch.Tensor, fine_probs: torch.Tensor, groups: ClassGroups
) -> torch.Tensor:
    """Per-class probabilities ``(N, n_classes)``: a class outside the fine group gets its
    group's probability shared equally among the group's classes; a class inside it gets the
    group's probability times the fine model's probability for it."""
    n = coarse_probs.shape[0]
    out = coarse_probs.new_zeros((n, len(groups.classes)))
    for g, (name, members) in enumerate(groups.groups):
        indices = [groups.classes.index(c) for c in members]
        if name == groups.fine_group:
            out[:, indices] = coarse_probs[:, g : g + 1] * fine_probs
        else:
            out[:, indices] = coarse_probs[:, g : g + 1] / len(indices)
    return out
