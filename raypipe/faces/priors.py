"""RetinaFace's prior (anchor) boxes and the decoding of its box and landmark offsets.

Priors are ``(cx, cy, w, h)`` as fractions of the input image's width and height: at each level
``k`` (strides 8, 16, 32 pixels) the feature map has ``ceil(H / stride) x ceil(W / stride)``
cells, and each cell ``(i, j)`` holds square anchors of ``min_sizes[k]`` pixels (16 and 32, 64
and 128, 256 and 512) centred at ``((j + 0.5) * stride, (i + 0.5) * stride)`` pixels. Rows are
ordered level, cell row, cell column, anchor, the order of the network's outputs.

Offsets decode as in SSD with variances ``(0.1, 0.2)``: centre = prior centre + offset * 0.1 *
prior size; size = prior size * exp(offset * 0.2); each landmark = prior centre + offset * 0.1 *
prior size.
"""

from __future__ import annotations

import math

import torch

#: Anchor sides per level, pixels of the network input.
MIN_SIZES: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
#: Feature-map strides per level, pixels.
STEPS: tuple[int, ...] = (8, 16, 32)
#: SSD variances of the centre and of the log-size offsets.
VARIANCES: tuple[float, float] = (0.1, 0.2)


def prior_boxes(height: int, width: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Priors ``(P, 4)`` float32 ``(cx, cy, w, h)``, fractions of a ``height x width`` input."""
    rows = []
    for sizes, step in zip(MIN_SIZES, STEPS, strict=True):
        cells_y, cells_x = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(cells_y, dtype=torch.float32) + 0.5) * step / height
        cx = (torch.arange(cells_x, dtype=torch.float32) + 0.5) * step / width
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        per_anchor = [
            torch.stack(
                [
                    grid_x,
                    grid_y,
                    torch.full_like(grid_x, size / width),
                    torch.full_like(grid_x, size / height),
                ],
                dim=-1,
            )
            for size in sizes
        ]
        rows.append(torch.stack(per_anchor, dim=2).reshape(-1, 4))
    return torch.cat(rows).to(device)


def decode_boxes(offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Box offsets ``(..., P, 4)`` -> corners ``(..., P, 4)`` ``(x1, y1, x2, y2)``, fractions of
    the input's width and height."""
    centre = priors[:, :2] + offsets[..., :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(offsets[..., 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(offsets: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Landmark offsets ``(..., P, 10)`` -> points ``(..., P, 5, 2)`` ``(x, y)``, fractions of the
    input's width and height."""
    points = offsets.reshape(*offsets.shape[:-1], 5, 2)
    return priors[:, None, :2] + points * VARIANCES[0] * priors[:, None, 2:]
