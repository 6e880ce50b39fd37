"""The RetinaFace network with a MobileNet-0.25 backbone (Deng et al. 2019), as in the
MIT-licensed Pytorch_Retinaface release whose weights ``mobilenet0.25_Final.pth`` raypipe reads.

Layers and their state-dict names follow that release, so its weights load strictly:

- ``body``: MobileNetV1 at width 0.25 in three stages (strides 8, 16 and 32 pixels; 64, 128 and
  256 channels), depthwise-separable 3x3 convolutions with batch norm and LeakyReLU(0.1);
- ``fpn``: 1x1 lateral convolutions to 64 channels, top-down nearest upsampling, 3x3 merges;
- ``ssh1..3``: the SSH context module (3x3, 5x5 and 7x7 receptive fields as stacked 3x3
  convolutions, concatenated to 64 channels, ReLU);
- ``ClassHead``, ``BboxHead``, ``LandmarkHead``: 1x1 convolutions per level predicting, for each
  of the two anchors of a cell, 2 class logits (index 1 is "face"), 4 box offsets and 10
  landmark offsets (five ``(x, y)`` points).

Input: ``(N, 3, H, W)`` float BGR pixels minus the per-channel means ``(104, 117, 123)`` (no
scaling), any ``H, W``. Output rows are ordered level by level, then row-major over cells, then
anchor, the order of :func:`raypipe.faces.priors.prior_boxes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

#: Anchors per feature-map cell (two sizes per level).
ANCHORS_PER_CELL = 2
#: Channels of the FPN and SSH outputs.
_OUT_CHANNELS = 64
_LEAKY = 0.1  # LeakyReLU slope of the release for 64-channel FPN/SSH and the backbone


def _conv_bn(inp: int, out: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def _conv_bn_no_relu(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out))


def _conv_bn_1x1(inp: int, out: int, leaky: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def _conv_dw(inp: int, out: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=_LEAKY, inplace=True),
        nn.Conv2d(inp, out, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out),
        nn.LeakyReLU(negative_slope=_LEAKY, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 at width 0.25: three stages, outputs at strides 8, 16, 32."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2, leaky=_LEAKY),
            _conv_dw(8, 16, 1),
            _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2),
            _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            _conv_dw(64, 128, 2),
            *(_conv_dw(128, 128, 1) for _ in range(5)),
        )
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class FPN(nn.Module):
    """Feature pyramid: lateral 1x1 convolutions, top-down nearest upsampling, 3x3 merges."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        self.output1 = _conv_bn_1x1(in_channels[0], out_channels, _LEAKY)
        self.output2 = _conv_bn_1x1(in_channels[1], out_channels, _LEAKY)
        self.output3 = _conv_bn_1x1(in_channels[2], out_channels, _LEAKY)
        self.merge1 = _conv_bn(out_channels, out_channels, leaky=_LEAKY)
        self.merge2 = _conv_bn(out_channels, out_channels, leaky=_LEAKY)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        out1 = self.output1(features[0])
        out2 = self.output2(features[1])
        out3 = self.output3(features[2])
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 branches concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        quarter = out_channels // 4
        self.conv3X3 = _conv_bn_no_relu(in_channels, out_channels // 2)
        self.conv5X5_1 = _conv_bn(in_channels, quarter, leaky=_LEAKY)
        self.conv5X5_2 = _conv_bn_no_relu(quarter, quarter)
        self.conv7X7_2 = _conv_bn(quarter, quarter, leaky=_LEAKY)
        self.conv7x7_3 = _conv_bn_no_relu(quarter, quarter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5 = self.conv5X5_1(x)
        branch7 = self.conv7x7_3(self.conv7X7_2(branch5))
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(branch5), branch7], dim=1))


class _Head(nn.Module):
    """A 1x1 convolution predicting ``values`` numbers per anchor: ``(N, cells * 2, values)``."""

    def __init__(self, values: int) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(_OUT_CHANNELS, ANCHORS_PER_CELL * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class RetinaFaceNet(nn.Module):
    """RetinaFace, MobileNet-0.25: ``forward`` returns (face probability, box offsets, landmark
    offsets), shaped ``(N, P)``, ``(N, P, 4)`` and ``(N, P, 10)`` over the ``P`` priors."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNetV1()
        self.fpn = FPN((64, 128, 256), _OUT_CHANNELS)
        self.ssh1 = SSH(_OUT_CHANNELS, _OUT_CHANNELS)
        self.ssh2 = SSH(_OUT_CHANNELS, _OUT_CHANNELS)
        self.ssh3 = SSH(_OUT_CHANNELS, _OUT_CHANNELS)
        self.ClassHead = nn.ModuleList(_Head(2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(x))
        levels = [self.ssh1(levels[0]), self.ssh2(levels[1]), self.ssh3(levels[2])]
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, levels, strict=True)], 1)
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, levels, strict=True)], 1)
        marks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, levels, strict=True)], 1)
        return F.softmax(logits, dim=-1)[..., 1], boxes, marks
