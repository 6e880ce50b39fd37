"""Torch datasets and samplers over :class:`~raypipe.finetune.images.LabelledImages`.

Balanced sampling draws training images with probability inversely proportional to their
class's frequency. :class:`ShardedWeightedSampler` does this across data-parallel workers: all
workers draw the same weighted sequence for an epoch (same seed) and each takes every
``world_size``-th item from its rank, so together they see one balanced epoch without overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from raypipe.finetune.images import LabelledImages


class ImageDataset(Dataset):
    """The images of one split as ``(image tensor, label)`` pairs, transformed on access."""

    def __init__(
        self, images: LabelledImages, split: str, transform: Callable[[np.ndarray], torch.Tensor]
    ) -> None:
        self.images = images
        self.positions = images.indices(split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = int(self.positions[index])
        return self.transform(self.images.image(position)), int(self.images.labels[position])

    @property
    def labels(self) -> np.ndarray:
        """Class index of every item, in item order."""
        return self.images.labels[self.positions]


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-item sampling weights inversely proportional to class frequency (sum to 1)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    per_class = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    weights = per_class[labels]
    return weights / weights.sum()


class ShardedWeightedSampler(Sampler[int]):
    """Class-balanced sampling with replacement, sharded over data-parallel ranks.

    Args:
        labels: class index per item.
        n_classes: number of classes.
        rank: this worker's rank.
        world_size: number of workers.
        seed: base seed; call :meth:`set_epoch` each epoch to draw a new sequence.
    """

    def __init__(
        self, labels: np.ndarray, n_classes: int, rank: int = 0, world_size: int = 1, seed: int = 0
    ) -> None:
        self.weights = torch.as_tensor(class_weights(labels, n_classes))
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0
        self.per_rank = -(-len(labels) // world_size)

    def set_epoch(self, epoch: int) -> None:
        """Draw the sequence of ``epoch`` (the same on every rank)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        drawn = torch.multinomial(
            self.weights, self.per_rank * self.world_size, replacement=True, generator=generator
        )
        return iter(drawn[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank
