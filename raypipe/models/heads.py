"""Small torch heads over media-level features: an MLP over one vector per media, and sequence
heads over a media's window sequence (LSTM, GRU, temporal attention, NetVLAD-style pooling).

Sequence heads take windows ``(B, S, D)`` and a mask ``(B, S)`` (True = a real window) and
return ``(B, out)`` outputs (class logits, label logits or regression values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

SEQUENCE_KINDS = ("lstm", "gru", "attention", "netvlad")


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


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.float()[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class SequenceHead(nn.Module):
    """A sequence head of ``kind``:

    - 'lstm' / 'gru': a recurrent layer, then the masked mean of its outputs;
    - 'attention': temporal attention pooling, softmax over real windows of a learnt score
      ``w . tanh(W h_t)``;
    - 'netvlad': soft assignment of each window to ``clusters`` learnt centres, residuals summed
      per centre, intra- and L2-normalised (NetVLAD), then a linear layer.
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
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f"unknown sequence head '{kind}'; allowed: {SEQUENCE_KINDS}")
        self.kind = kind
        self.project = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        if kind in ("lstm", "gru"):
            layer = nn.LSTM if kind == "lstm" else nn.GRU
            self.recurrent = layer(hidden, hidden, batch_first=True)
            pooled = hidden
        elif kind == "attention":
            self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            pooled = hidden
        else:
            self.assign = nn.Linear(hidden, clusters)
            self.centres = nn.Parameter(torch.randn(clusters, hidden) * 0.1)
            pooled = clusters * hidden
        self.head = nn.Linear(pooled, out)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        # A media without windows attends to its (zero) padding rather than to nothing.
        mask = mask | ~mask.any(1, keepdim=True)
        h = torch.relu(self.project(windows))
        if self.kind in ("lstm", "gru"):
            h, _ = self.recurrent(h)
            pooled = _masked_mean(h, mask)
        elif self.kind == "attention":
            scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
            pooled = (torch.softmax(scores, dim=1)[..., None] * h).sum(1)
        else:
            soft = torch.softmax(self.assign(h), dim=-1) * mask.float()[..., None]  # (B, S, K)
            residuals = h[:, :, None, :] - self.centres[None, None]  # (B, S, K, H)
            vlad = (soft[..., None] * residuals).sum(1)  # (B, K, H)
            vlad = F.normalize(F.normalize(vlad, dim=-1).flatten(1), dim=-1)
            pooled = vlad
        return self.head(self.dropout(pooled))
