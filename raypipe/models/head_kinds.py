"""The kinds of sequence head (:data:`SEQUENCE_HEADS`): how each pools a media's projected
windows into one vector. Importing this module does not import torch (each function imports
it when called), so the classifier registry can list the sequence heads, and a search that
fits only scikit-learn models never pays torch's import (about 2 s per process).

The head itself, :class:`raypipe.models.heads.SequenceHead`, calls a kind's ``init`` when it is
built and its ``pool`` in ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from raypipe.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn


class SequenceKind(NamedTuple):
    """How a kind of sequence head pools its projected windows into one vector.

    Attributes:
        init: ``(head, hidden, clusters) -> width``: adds the kind's layers to the head (as
            attributes, so they are part of its state dict) and returns the pooled width.
        pool: ``(head, h (B, S, hidden), mask (B, S) bool) -> (B, width)``.
        description: one line for docs.
    """

    init: Callable[[Any, int, int], int]
    pool: Callable[[Any, Any, Any], Any]
    description: str = ""


SEQUENCE_HEADS: Registry[SequenceKind] = Registry("SEQUENCE_HEADS", "sequence head")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, S, H) over the windows where ``mask`` (B, S) is True: (B, H)."""
    weights = mask.float()[..., None]
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _recurrent_init(layer: str) -> Callable[[nn.Module, int, int], int]:
    """The init of a recurrent kind: ``torch.nn.<layer>`` (e.g. 'LSTM') over the windows."""

    def init(head: nn.Module, hidden: int, clusters: int) -> int:
        from torch import nn

        head.recurrent = getattr(nn, layer)(hidden, hidden, batch_first=True)
        return hidden

    return init


def _recurrent_pool(head: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    h, _ = head.recurrent(h)
    return masked_mean(h, mask)


def _attention_init(head: nn.Module, hidden: int, clusters: int) -> int:
    from torch import nn

    head.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    return hidden


def _attention_pool(head: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    import torch

    scores = head.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, dim=1)[..., None] * h).sum(1)


def _netvlad_init(head: nn.Module, hidden: int, clusters: int) -> int:
    import torch
    from torch import nn

    head.assign = nn.Linear(hidden, clusters)
    head.centres = nn.Parameter(torch.randn(clusters, hidden) * 0.1)
    return clusters * hidden


def _netvlad_pool(head: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    import torch
    import torch.nn.functional as F  # noqa: N812

    soft = torch.softmax(head.assign(h), dim=-1) * mask.float()[..., None]  # (B, S, K)
    residuals = h[:, :, None, :] - head.centres[None, None]  # (B, S, K, H)
    vlad = (soft[..., None] * residuals).sum(1)  # (B, K, H)
    return F.normalize(F.normalize(vlad, dim=-1).flatten(1), dim=-1)


SEQUENCE_HEADS.register(
    "lstm",
    SequenceKind(_recurrent_init("LSTM"), _recurrent_pool, "LSTM over the windows, masked mean"),
)
SEQUENCE_HEADS.register(
    "gru",
    SequenceKind(_recurrent_init("GRU"), _recurrent_pool, "GRU over the windows, masked mean"),
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
