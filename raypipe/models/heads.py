"""Small torch heads over media-level features: an MLP over one vector per media, and sequence
heads over a media's window sequence (LSTM, GRU, temporal attention, NetVLAD-style pooling;
the kinds are registered in :mod:`raypipe.models.head_kinds`).

Sequence heads take windows ``(B, S, D)`` and a mask ``(B, S)`` (True = a real window) and
return ``(B, out)`` outputs (class logits, label logits or regression values).
"""

from __future__ import annotations

import torch
from torch import nn

from raypipe.models.head_kinds import SEQUENCE_HEADS, SequenceKind, masked_mean


class MLPHead(nn.Module):
    """Two hidden ReLU layers with dropout: (B, D) -> (B, out)."""

    def __init__(self, dim: int, out: int, hidden: int = 128, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SequenceHead(nn.Module):
    """A sequence head of a registered ``kind`` (:data:`SEQUENCE_HEADS`):

    - 'lstm' / 'gru': a recurrent layer, then the masked mean of its outputs;
    - 'attention': temporal attention pooling, softmax over real windows of a learnt score
      ``w . tanh(W h_t)``;
    - 'netvlad': soft assignment of each window to ``clusters`` learnt centres, residuals summed
      per centre, intra- and L2-normalised (NetVLAD), then a linear layer.

    Every kind projects the windows to ``hidden`` first and ends with dropout and a linear
    layer to ``out``.
    """

    def __init__(
        self,
        dim: int,
        out: int,
        kind: str = "gru",
        hidden: int = 64,
        dropout: float = 0.2,
        clusters: int = 8,
    ) -> None:
        super().__init__()
        spec = SEQUENCE_HEADS.get(kind)
        self.kind = kind
        self.project = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        pooled = spec.init(self, hidden, clusters)
        self.head = nn.Linear(pooled, out)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        # A media without windows attends to its (zero) padding rather than to nothing.
        mask = mask | ~mask.any(1, keepdim=True)
        h = torch.relu(self.project(windows))
        pooled = SEQUENCE_HEADS.get(self.kind).pool(self, h, mask)
        return self.head(self.dropout(pooled))


# SEQUENCE_HEADS and SequenceKind are re-exported: they lived here before head_kinds.
__all__ = ["SEQUENCE_HEADS", "MLPHead", "SequenceHead", "SequenceKind", "masked_mean"]
