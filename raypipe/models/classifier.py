"""A backbone with a new classification head: the model fine-tuned on a face corpus.

Two-stage fine-tuning (corpus A, then corpus B) is this model trained twice: the second run
builds its backbone from the first run's checkpoint and starts a fresh head, since the two
corpora may have different classes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raypipe.models.backbones import Backbone, build_backbone


class BackboneClassifier(nn.Module):
    """Features of any image encoder followed by dropout and a linear head.

    Args:
        encoder: maps ``(N, 3, H, W)`` RGB in [0, 1] to ``(N, dim)``; has a ``dim`` attribute
            (a :class:`~raypipe.models.backbones.Backbone`, or a small module in tests).
        n_classes: number of output classes.
        dropout: dropout probability before the head.
    """

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.dim), n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, n_classes)`` of ``(N, 3, H, W)`` RGB images in [0, 1]."""
        return self.head(self.dropout(self.backbone(images)))


def build_classifier(
    arch: str, n_classes: int, checkpoint: str | Path | None = None, dropout: float = 0.0
) -> BackboneClassifier:
    """A torchvision ``arch`` backbone (weights from ``checkpoint``, or random) with a new head.

    ``checkpoint`` may be a state dict of the backbone, an exported model, or a checkpoint
    folder of an earlier training run (its head is ignored): this is the second stage of
    two-stage fine-tuning.
    """
    backbone: Backbone = build_backbone(arch, checkpoint)
    return BackboneClassifier(backbone, n_classes, dropout)
