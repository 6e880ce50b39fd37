"""Sequence models over stored frame features: a clip's per-frame embeddings (from the feature
store's frames table) cut into windows, classified by temporal convolutions or by attention,
or (:class:`MultimodalSequenceModel`) labelled frame by frame from several modalities fused
by attention.

Frames without a face keep their place in time (their features are zeros and masked out), so
windows stay aligned with timestamps and with audio.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn


def frame_windows(
    features: np.ndarray, valid: np.ndarray, window: int, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``(T, D)`` frame features into windows of ``window`` frames every ``hop`` frames.

    The last window is padded (mask False) when T is not a whole number of hops; a clip
    shorter than one window gives one padded window.

    Returns:
        windows ``(W, window, D)`` float32, mask ``(W, window)`` bool and the first frame
        index of each window ``(W,)``.
    """
    t, d = features.shape
    starts = list(range(0, max(t - window, 0) + 1, hop))
    if starts[-1] + window < t:
        starts.append(starts[-1] + hop)
    out = np.zeros((len(starts), window, d), np.float32)
    mask = np.zeros((len(starts), window), bool)
    for i, start in enumerate(starts):
        chunk = features[start : start + window]
        out[i, : len(chunk)] = chunk
        mask[i, : len(chunk)] = valid[start : start + window]
    out[~mask] = 0.0
    return out, mask, np.asarray(starts, np.int64)


class TemporalModel(nn.Module):
    """Classify windows ``(B, T, D)`` of frame features (mask ``(B, T)``).

    Args:
        dim: frame feature size.
        n_classes: output classes.
        kind: 'conv' (two dilated 1-D convolutions, then masked mean over time) or
            'attention' (a transformer encoder layer, then masked mean).
        hidden: channels of the temporal layers.
        dropout: dropout probability.
    """

    def __init__(
        self,
        dim: int,
        n_classes: int,
        kind: Literal["conv", "attention"] = "conv",
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.project = nn.Linear(dim, hidden)
        if kind == "conv":
            self.temporal = nn.Sequential(
                nn.Conv1d(hidden, hidden, 3, padding=1),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2),
                nn.ReLU(),
            )
        else:
            self.temporal = nn.TransformerEncoderLayer(
                hidden, nhead=4, dim_feedforward=hidden * 2, dropout=dropout, batch_first=True
            )
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)``."""
        mask = mask.bool()
        x = self.project(frames) * mask[..., None]
        if self.kind == "conv":
            x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        else:
            # A window with no valid frame attends to all (zero) frames instead of none.
            empty = ~mask.any(1, keepdim=True)
            x = self.temporal(x, src_key_padding_mask=~(mask | empty))
        weights = mask.float()[..., None]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


class ModalityConv(nn.Module):
    """One modality's frames ``(B, T, D)`` (mask ``(B, T)``) through a projection and two
    1-D temporal convolutions (kernel 3, the second dilated by 2): ``(B, T, hidden)``.

    Masked frames enter as zeros, so what a frame without this modality stores never reaches
    the output.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.project = nn.Linear(dim, hidden)
        self.temporal = nn.Sequential(
            nn.Conv1d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2),
            nn.ReLU(),
        )

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame encodings ``(B, T, hidden)``."""
        x = self.project(frames * mask[..., None]) * mask[..., None]
        return self.temporal(x.transpose(1, 2)).transpose(1, 2)


class MultimodalSequenceModel(nn.Module):
    """Frame logits for windows of several modalities' frame features (ABAW7 feature-based
    system): each modality through its own :class:`ModalityConv`, then per frame an
    attention over modalities (softmax of a learnt score of each modality's encoding, over
    the modalities present at that frame; all of them where none is), then one linear head
    per task.

    Args:
        dims: feature size of each modality, in input order.
        n_expressions: expression classes (head 'expr').
        n_aus: action units (head 'au', logits).
        hidden: channels of the temporal layers and of the fusion.
        dropout: dropout probability.
    """

    def __init__(
        self,
        dims: list[int],
        n_expressions: int,
        n_aus: int,
        hidden: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.dims = list(dims)
        self.modalities = nn.ModuleList(ModalityConv(d, hidden, dropout) for d in dims)
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.expression = nn.Linear(hidden, n_expressions)
        self.action_units = nn.Linear(hidden, n_aus)
        self.valence_arousal = nn.Linear(hidden, 2)

    def forward(
        self, frames: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``frames`` ``(B, T, sum(dims))`` (modalities side by side), ``masks`` ``(B, T, M)``
        bool, one column per modality. Returns per-frame expression logits ``(B, T, C)``, AU
        logits ``(B, T, K)`` and valence/arousal in [-1, 1] ``(B, T, 2)``."""
        masks = masks.bool()
        parts = torch.split(frames, self.dims, dim=-1)
        encoded = torch.stack(
            [
                m(x, masks[..., i].float())
                for i, (m, x) in enumerate(zip(self.modalities, parts, strict=True))
            ],
            dim=2,
        )  # (B, T, M, hidden)
        scores = self.score(encoded).squeeze(-1)  # (B, T, M)
        present = masks | ~masks.any(-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=-1)
        fused = (encoded * weights[..., None]).sum(2)
        return (
            self.expression(fused),
            self.action_units(fused),
            torch.tanh(self.valence_arousal(fused)),
        )
