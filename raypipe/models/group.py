"""Group-level emotion (EmotiW 2018 group): a global scene branch plus a face branch whose
per-face features are merged into one group vector, for a varying number of faces per image.

Faces arrive padded to the largest count in the batch, with a mask marking the real ones.
Merging is either the plain mean over faces or attention: a learned score per face (from the
face alone, or from the face together with the global scene feature), softmax over the real
faces, weighted sum. Padded faces never influence the result.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Merge = Literal["mean", "attention", "context_attention"]


class FaceAttentionPool(nn.Module):
    """Merge ``(B, F, D)`` face features with mask ``(B, F)`` into ``(B, D)``.

    Args:
        dim: face feature size.
        merge: 'mean', 'attention' (score from the face) or 'context_attention' (score from the
            face and the image's global feature).
        context_dim: global feature size (context_attention only).
        hidden: width of the scoring layer.
    """

    def __init__(
        self, dim: int, merge: Merge = "attention", context_dim: int = 0, hidden: int = 64
    ) -> None:
        super().__init__()
        self.merge = merge
        extra = context_dim if merge == "context_attention" else 0
        self.score = (
            nn.Sequential(nn.Linear(dim + extra, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            if merge != "mean"
            else None
        )

    def weights(
        self, faces: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weight of each face ``(B, F)``: zero on padding, summing to 1 over real faces
        (all zero for an image without faces)."""
        mask = mask.bool()
        if self.score is None:
            weights = mask.float()
        else:
            inputs = faces
            if self.merge == "context_attention":
                inputs = torch.cat([faces, context[:, None].expand(-1, faces.shape[1], -1)], -1)
            logits = self.score(inputs).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(logits, dim=1).nan_to_num(0.0)
        return weights / weights.sum(1, keepdim=True).clamp(min=1e-8)

    def forward(
        self, faces: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        return (self.weights(faces, mask, context)[..., None] * faces).sum(1)


class GroupEmotionNet(nn.Module):
    """Scene branch + face branch merged by :class:`FaceAttentionPool`, then a classifier over
    the concatenated global and group vectors.

    Args:
        scene_encoder: ``(B, 3, H, W)`` -> ``(B, dim)``, with ``dim``.
        face_encoder: ``(N, 3, h, w)`` -> ``(N, dim)``, with ``dim``; or None when the face
            branch is fed precomputed face features (e.g. stored face_backbone rows).
        n_classes: group emotion classes (3 in EmotiW group: positive, neutral, negative).
        face_dim: face feature size when ``face_encoder`` is None.
        merge: how faces are merged.
    """

    def __init__(
        self,
        scene_encoder: nn.Module,
        face_encoder: nn.Module | None,
        n_classes: int = 3,
        face_dim: int | None = None,
        merge: Merge = "attention",
    ) -> None:
        super().__init__()
        self.scene = scene_encoder
        self.face = face_encoder
        scene_dim = int(scene_encoder.dim)
        dim = int(face_encoder.dim) if face_encoder is not None else int(face_dim or 0)
        if dim <= 0:
            raise ValueError("give a face_encoder or a positive face_dim")
        self.pool = FaceAttentionPool(dim, merge, context_dim=scene_dim)
        self.head = nn.Linear(scene_dim + dim, n_classes)

    def forward(
        self, images: torch.Tensor, faces: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, n_classes)``.

        Args:
            images: ``(B, 3, H, W)`` whole images, RGB in [0, 1].
            faces: ``(B, F, 3, h, w)`` face crops (or ``(B, F, D)`` features without an
                encoder), padded to F faces.
            mask: ``(B, F)`` True for real faces.
        """
        scene = self.scene(images)
        if self.face is not None:
            b, f = faces.shape[:2]
            features = self.face(faces.flatten(0, 1)).view(b, f, -1)
        else:
            features = faces
        group = self.pool(features, mask, scene)
        return self.head(torch.cat([scene, group], dim=1))


def pad_faces(faces: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-image face tensors ``(F_i, ...)`` into ``(B, F_max, ...)`` with a ``(B, F_max)``
    mask of real faces; images may have no face (an all-False mask row)."""
    reference = next((face for face in faces if len(face)), None)
    if reference is None:
        raise ValueError("pad_faces needs at least one face in the batch to know the shape")
    most = max(len(face) for face in faces)
    out = reference.new_zeros((len(faces), most, *reference.shape[1:]))
    mask = torch.zeros((len(faces), most), dtype=torch.bool)
    for i, face in enumerate(faces):
        out[i, : len(face)] = face
        mask[i, : len(face)] = True
    return out, mask
