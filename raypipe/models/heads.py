"""Small torch heads over media-level features: an MLP over one vector per media, and sequence
heads over a media's window sequence (LSTM, GRU, temporal attention, NetVLAD-style pooling).

Sequence heads take windows ``(B, S, D)`` and a mask ``(B, S)`` (True = a real window) and
return ``(B, out)`` outputs (class logits, label logits or regression values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from raypipe.registry import Registry


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


class SequenceKind(NamedTuple):
    """How a kind of :class:`SequenceHead` pools its projected windows into one vector.

    Attributes:
        init: ``(head, hidden, clusters) -> width``: adds the kind's layers to the head (as
            attributes, so they are part of its state dict) and returns the pooled width.
        pool: ``(head, h (B, S, hidden), mask (B, S) bool) -> (B, width)``.
        description: one line for docs.
    """

    init: Callable[[nn.Module, int, int], int]
    pool: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    description: str = ""


#: The kinds of sequence head; each is also a classifier of the search (same name).
SEQUENCE_HEADS: Registry[SequenceKind] = Registry("SEQUENCE_HEADS", "sequence head")


def _recurrent_init(layer: type[nn.Module]) -> Callable[[nn.Module, int, int], int]:
    def init(head: nn.Module, hidden: int, clusters: int) -> int:
        head.recurrent = layer(hidden, hidden, batch_first=True)
        return hidden

    return init


def _recurrent_pool(head: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    h, _ = head.recurrent(h)
    return _masked_mean(h, mask)


def _attention_init(head: nn.Module, hidden: int, clusters: int) -> int:
    head.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    return hidden


def _attention_pool(head: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    scores = head.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, dim=1)[..., None] * h).sum(1)


def _netvlad_init(head: nn.Module, hidden: int, clusters: int) -> int:
    head.assign = nn.Linear(hidden, clusters)
    head.centres = nn.Parameter(torch.randn(clusters, hidden) * 0.1)
    return clusters * hidden


def _netvlad_pool(head: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    soft = torch.softmax(head.assign(h), dim=-1) * mask.float()[..., None]  # (B, S, K)
    residuals = h[:, :, None, :] - head.centres[None, None]  # (B, S, K, H)
    vlad = (soft[..., None] * residuals).sum(1)  # (B, K, H)
    return F.normalize(F.normalize(vlad, dim=-1).flatten(1), dim=-1)


SEQUENCE_HEADS.register(
    "lstm",
    SequenceKind(_recurrent_init(nn.LSTM), _recurrent_pool, "LSTM over the windows, masked mean"),
)
SEQUENCE_HEADS.register(
    "gru",
    SequenceKind(_recurrent_init(nn.GRU), _recurrent_pool, "GRU over the windows, masked mean"),
)
SEQUENCE_HEADS.register(
    "attention",
    SequenceKind(
        _attention_init,
        _attention_pool,
        "temporal attention pooling (softmax of a learnt score over real windows)",
    ),
)
SEQUENCE_HEADS.register(
    "netvlad",
    SequenceKind(_netvlad_init, _netvlad_pool, "NetVLAD-style soft assignment to learnt centres"),
)


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
