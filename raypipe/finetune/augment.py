"""Image augmentation for fine-tuning (torchvision.transforms.v2): flips, a small affine change
and colour jitter on training images; evaluation images are only resized."""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def build_transform(
    size: int,
    train: bool,
    flip: bool = True,
    degrees: float = 10.0,
    translate: float = 0.05,
    scale: float = 0.1,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.0,
) -> v2.Compose:
    """A transform from an ``(H, W, 3)`` uint8 RGB array to a ``(3, size, size)`` float tensor
    in [0, 1] (the backbones normalise inside).

    Args:
        size: output side, pixels.
        train: add the random augmentations below (otherwise only resize).
        flip: random horizontal flip.
        degrees: largest rotation, degrees.
        translate: largest shift, as a fraction of the side.
        scale: largest zoom in or out, as a fraction (0.1: 0.9x to 1.1x).
        brightness, contrast, saturation, hue: colour jitter strengths (0 disables one).
    """
    steps: list[v2.Transform] = [
        v2.ToImage(),
        v2.Resize((size, size), antialias=True),
    ]
    if train:
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        if degrees or translate or scale:
            steps.append(
                v2.RandomAffine(
                    degrees=degrees,
                    translate=(translate, translate) if translate else None,
                    scale=(1 - scale, 1 + scale) if scale else None,
                )
            )
        if brightness or contrast or saturation or hue:
            steps.append(v2.ColorJitter(brightness, contrast, saturation, hue))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)
