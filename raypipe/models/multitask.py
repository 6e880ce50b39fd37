"""One network for expression, action units and valence/arousal, trained from partially
labelled data, then distilled into a student (the ABAW 2020 multitask method).

Every sample carries only some labels: a mask per task says which. Each task's loss is averaged
over the samples labelled for it, so unlabelled samples contribute nothing to that task. The
student learns from the ground truth where present and from the teacher's soft outputs
everywhere (softened expression probabilities, AU probabilities, valence/arousal values).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


@dataclass
class MultitaskOutput:
    """Outputs of :class:`MultitaskNet` for a batch of N images.

    Attributes:
        expression: ``(N, n_expressions)`` logits.
        action_units: ``(N, n_aus)`` logits (sigmoid gives AU probabilities).
        valence_arousal: ``(N, 2)`` in [-1, 1] (tanh).
    """

    expression: torch.Tensor
    action_units: torch.Tensor
    valence_arousal: torch.Tensor


@dataclass
class MultitaskTargets:
    """Partial labels of a batch; a mask marks which samples carry each task's label.

    Attributes:
        expression: ``(N,)`` class indices (any value where unlabelled).
        expression_mask: ``(N,)`` bool.
        action_units: ``(N, n_aus)`` 0/1 floats.
        au_mask: ``(N,)`` bool, or ``(N, n_aus)`` for per-AU annotation.
        valence_arousal: ``(N, 2)`` floats in [-1, 1].
        va_mask: ``(N,)`` bool.
    """

    expression: torch.Tensor
    expression_mask: torch.Tensor
    action_units: torch.Tensor
    au_mask: torch.Tensor
    valence_arousal: torch.Tensor
    va_mask: torch.Tensor


class MultitaskNet(nn.Module):
    """A shared image encoder with three heads.

    Args:
        encoder: maps ``(N, 3, H, W)`` RGB in [0, 1] to ``(N, dim)`` and has ``dim``.
        n_expressions: expression classes (7 for the EmotiW/ABAW basic expressions).
        n_aus: action units (multi-label).
        hidden: width of each head's hidden layer.
    """

    def __init__(
        self, encoder: nn.Module, n_expressions: int = 7, n_aus: int = 12, hidden: int = 256
    ) -> None:
        super().__init__()
        self.backbone = encoder
        dim = int(encoder.dim)

        def head(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, out))

        self.expression = head(n_expressions)
        self.action_units = head(n_aus)
        self.valence_arousal = head(2)

    def forward(self, images: torch.Tensor) -> MultitaskOutput:
        """Outputs of all three tasks for ``(N, 3, H, W)`` images."""
        features = self.backbone(images)
        return MultitaskOutput(
            self.expression(features),
            self.action_units(features),
            torch.tanh(self.valence_arousal(features)),
        )


class FeatureEncoder(nn.Module):
    """The shared encoder over stored frame features (feature-based multitask): a linear
    layer, ReLU and dropout, mapping ``(N, in_dim)`` standardised features to ``(N, dim)``.

    Args:
        in_dim: size of the stored feature vector.
        dim: output width.
        dropout: dropout probability after the ReLU.
    """

    def __init__(self, in_dim: int, dim: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Dropout(dropout))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, dim)`` encodings of ``(N, in_dim)`` features."""
        return self.layers(features)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    count = mask.sum()
    return (values * mask).sum() / count if count > 0 else values.sum() * 0.0


def multitask_loss(
    output: MultitaskOutput,
    targets: MultitaskTargets,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    au_pos_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Masked sum of the expression (cross-entropy), AU (binary cross-entropy, optionally
    weighted for rare AUs) and valence/arousal (1 - concordance correlation) losses.

    Returns the total loss and each task's value.
    """
    expression = F.cross_entropy(
        output.expression, targets.expression.clamp(min=0), reduction="none"
    )
    expression = _masked_mean(expression, targets.expression_mask)
    au = F.binary_cross_entropy_with_logits(
        output.action_units, targets.action_units, pos_weight=au_pos_weight, reduction="none"
    )
    au_mask = targets.au_mask
    au_mask = au_mask[:, None].expand_as(au) if au_mask.dim() == 1 else au_mask
    au = _masked_mean(au, au_mask)
    va = concordance_loss(output.valence_arousal, targets.valence_arousal, targets.va_mask)
    total = weights[0] * expression + weights[1] * au + weights[2] * va
    return total, {
        "expression": float(expression.detach()),
        "au": float(au.detach()),
        "va": float(va.detach()),
    }


def concordance_loss(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over columns of 1 - concordance correlation (CCC) over the masked rows."""
    keep = mask.bool()
    if keep.sum() < 2:
        return predicted.sum() * 0.0
    x, y = predicted[keep], target[keep]
    mx, my = x.mean(0), y.mean(0)
    vx, vy = x.var(0, unbiased=False), y.var(0, unbiased=False)
    covariance = ((x - mx) * (y - my)).mean(0)
    ccc = 2 * covariance / (vx + vy + (mx - my) ** 2 + 1e-8)
    return (1 - ccc).mean()


def distillation_loss(
    student: MultitaskOutput,
    teacher: MultitaskOutput,
    targets: MultitaskTargets,
    alpha: float = 0.5,
    temperature: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``alpha`` x the masked ground-truth loss + (1 - ``alpha``) x agreement with the teacher
    on every sample: KL divergence of temperature-softened expressions (scaled by T^2), binary
    cross-entropy against the teacher's AU probabilities, mean squared error on
    valence/arousal."""
    supervised, parts = multitask_loss(student, targets)
    t = temperature
    soft_expression = F.kl_div(
        F.log_softmax(student.expression / t, dim=1),
        F.softmax(teacher.expression.detach() / t, dim=1),
        reduction="batchmean",
    ) * (t * t)
    soft_au = F.binary_cross_entropy_with_logits(
        student.action_units, torch.sigmoid(teacher.action_units.detach())
    )
    soft_va = F.mse_loss(student.valence_arousal, teacher.valence_arousal.detach())
    soft = soft_expression + soft_au + soft_va
    total = alpha * supervised + (1 - alpha) * soft
    return total, {**parts, "soft": float(soft.detach())}
