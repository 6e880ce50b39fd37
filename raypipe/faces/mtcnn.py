"""MTCNN face detection (Zhang et al. 2016) with the pretrained weights shipped by facenet-pytorch.

Only the weight files ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` are read (as plain state
dicts), taken out of the pinned wheel into the weights folder (:mod:`raypipe.weights`);
facenet-pytorch is not installed and none of its Python code is imported. The three networks
and the cascade are implemented here:

1. an image pyramid (scale factor ``0.709`` by default, first scale ``12 / min_face_size``);
   PNet runs on every scale over the whole batch, each 12x12 window with face probability at
   least ``thresholds[0]`` becomes a candidate (stride 2); NMS per scale (IoU 0.5) and across
   scales (IoU 0.7), then box regression and squaring;
2. RNet scores 24x24 crops of all candidates of the batch at once (``> thresholds[1]``), NMS
   (IoU 0.7), regression, squaring;
3. ONet scores 48x48 crops (``> thresholds[2]``), regresses the box and predicts five
   landmarks; a final NMS (intersection over the smaller area, 0.7) removes nested boxes.

Conventions of the converted weights (they come from the Caffe/TF release, which was trained on
transposed images): facenet-pytorch folded the transposition into the conv kernels, so images
are fed in the ordinary ``(N, 3, H, W)`` RGB layout, but the dense layers of RNet and ONet expect
the conv features flattened in ``(W, H, C)`` order, hence the ``permute(0, 3, 2, 1)`` before
flattening. Pixels are normalised as ``(x - 127.5) * 0.0078125``; channel 1 of the softmax is
"face". Crops that leave the frame are zero-padded as in the original MTCNN (facenet-pytorch
cuts them at the frame's edge instead, so faces touching the edge can differ slightly); for
faces inside the frame, boxes, landmarks and scores equal facenet-pytorch's own
implementation's (tests/faces/test_mtcnn.py runs it from the pinned wheel).

All coordinates returned are in pixels of the input frame, 0-based, with ``x`` horizontal:
a box ``(x1, y1, x2, y2)`` covers ``frame[int(y1):int(y2), int(x1):int(x2)]``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.ops import batched_nms

from raypipe.errors import WeightsError
from raypipe.weights import FETCH_COMMAND, file_sha256, weight_file

log = logging.getLogger(__name__)

#: The three MTCNN weight files, as paths inside the weights folder (from facenet-pytorch 2.6.0).
WEIGHT_FILES: dict[str, str] = {
    "pnet": "mtcnn/pnet.pt",
    "rnet": "mtcnn/rnet.pt",
    "onet": "mtcnn/onet.pt",
}

_PNET_STRIDE = 2
_PNET_CELL = 12
_NMS_SCALE = 0.5  # per pyramid scale, per image
_NMS_PYRAMID = 0.7  # across scales, per image
_NMS_RNET = 0.7
_NMS_FINAL_MIN = 0.7  # intersection over the smaller box, per image


@dataclass(frozen=True)
class FaceDetections:
    """Faces found in one frame, most confident first.

    Attributes:
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in pixels of the input frame (0-based;
            ``x2, y2`` are the exclusive right/bottom edges). May extend past the frame.
        scores: ``(N,)`` float32 ONet face probabilities in ``[0, 1]``.
        landmarks: ``(N, 5, 2)`` float32 ``(x, y)`` pixels: left eye, right eye, nose, mouth
            left, mouth right ("left" as seen in the image).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> FaceDetections:
        """No faces: arrays of shapes ``(0, 4)``, ``(0,)`` and ``(0, 5, 2)``."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
        )


# --------------------------------------------------------------------------- networks


class PNet(nn.Module):
    """Proposal net: fully convolutional, one 12x12 window per output cell (stride 2).

    Maps normalised ``(N, 3, H, W)`` RGB to ``(prob (N, 2, h, w), reg (N, 4, h, w))``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return F.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement net on 24x24 crops: ``(prob (N, 2), reg (N, 4))``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # The dense weights come from a graph that flattened (W, H, C), not (C, H, W).
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu4(self.dense4(x))
        return F.softmax(self.dense5_1(x), dim=1), self.dense5_2(x)


class ONet(nn.Module):
    """Output net on 48x48 crops: ``(prob (N, 2), reg (N, 4), landmarks (N, 10))``.

    Landmarks are fractions of the crop: five ``x`` values, then five ``y`` values.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        x = self.prelu5(self.dense5(x))
        return F.softmax(self.dense6_1(x), dim=1), self.dense6_2(x), self.dense6_3(x)


def weight_paths() -> dict[str, Path]:
    """Paths of the three MTCNN weight files in the weights folder, checked by SHA-256.

    Raises:
        WeightsError: a file is missing or damaged (the message names the fetch command).
    """
    return {name: weight_file(target) for name, target in WEIGHT_FILES.items()}


def load_net(
    net: nn.Module, path: Path, device: str | torch.device = "cpu", what: str = "MTCNN"
) -> nn.Module:
    """Load a state dict from ``path`` into ``net`` (strictly), move it to ``device``, eval mode.
    ``what`` names the weights in errors (the MTCNN stages, RetinaFace). Names saved from
    ``nn.DataParallel`` (prefixed ``module.``) are read as the plain names.

    Raises:
        WeightsError: the file cannot be read or its tensors do not match the network.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise WeightsError(
            f"Cannot read {what} weights '{path}' ({exc}); extract them again with "
            f"`{FETCH_COMMAND}`."
        ) from exc
    if not isinstance(state, dict):
        raise WeightsError(
            f"{what} weights '{path}' hold a {type(state).__name__}, not a state dict; extract "
            f"them again with `{FETCH_COMMAND}`."
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"{what} weights '{path}' do not match the network ({type(net).__name__}): {exc}"
        ) from exc
    return net.to(device).eval()


# --------------------------------------------------------------------------- cascade helpers


def _pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """Scales at which a 12-pixel window sees faces from ``min_face_size`` pixels upwards."""
    scale = _PNET_CELL / min_face_size
    side = min(height, width) * scale
    scales = []
    while side >= _PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _pnet_candidates(
    prob: torch.Tensor, reg: torch.Tensor, scale: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PNet output of one scale -> ``(M, 9)`` rows ``x1 y1 x2 y2 score dx1 dy1 dx2 dy2``.

    Box corners use the original MTCNN convention (1-based pixels, both ends inclusive), in
    pixels of the full-size frame. Also returns the frame index of each row.
    """
    face = prob[:, 1]  # (B, h, w)
    mask = face >= threshold
    where = mask.nonzero()  # (M, 3): frame, row (y), column (x)
    image_inds = where[:, 0]
    score = face[mask]
    offsets = reg.permute(0, 2, 3, 1)[mask]  # (M, 4)
    xy = where[:, 1:].flip(1).to(reg.dtype)  # (x, y)
    q1 = torch.floor((_PNET_STRIDE * xy + 1) / scale)
    q2 = torch.floor((_PNET_STRIDE * xy + _PNET_CELL) / scale)
    return torch.cat([q1, q2, score[:, None], offsets], dim=1), image_inds


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool = True) -> torch.Tensor:
    """Apply MTCNN box regression: offsets are fractions of the inclusive width/height
    (``x2 - x1 + 1``), or of ``x2 - x1`` for PNet's (``inclusive`` False), as the original
    MTCNN and facenet-pytorch do."""
    extra = 1 if inclusive else 0
    w = boxes[:, 2] - boxes[:, 0] + extra
    h = boxes[:, 3] - boxes[:, 1] + extra
    scale = torch.stack([w, h, w, h], dim=1)
    return boxes[:, :4] + offsets * scale


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre (side = the longer side)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _crops(
    images: torch.Tensor, boxes: torch.Tensor, image_inds: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut boxes (1-based inclusive, truncated to integers) out of ``images``, resize to ``size``.

    Regions outside the frame are zero (raw pixel value 0, as in the original MTCNN). Returns
    the raw (not normalised) crops ``(K, 3, size, size)`` and the indices of the boxes that
    were usable (boxes less than one pixel wide or high are dropped).
    """
    height, width = images.shape[2:]
    ints = boxes.trunc().to(torch.int64).tolist()
    frames = image_inds.tolist()
    kept: list[int] = []
    out: list[torch.Tensor] = []
    for k, ((x1, y1, x2, y2), frame) in enumerate(zip(ints, frames, strict=True)):
        x0, y0 = x1 - 1, y1 - 1  # 0-based first column / row; x2, y2 are exclusive ends
        if x2 - x0 < 1 or y2 - y0 < 1:
            continue
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x2, width), min(y2, height)
        if x0 >= 0 and y0 >= 0 and x2 <= width and y2 <= height:
            patch = images[frame : frame + 1, :, y0:y2, x0:x2]
        else:
            patch = images.new_zeros((1, 3, y2 - y0, x2 - x0))
            if sx1 > sx0 and sy1 > sy0:
                patch[0, :, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = images[
                    frame, :, sy0:sy1, sx0:sx1
                ]
        out.append(F.interpolate(patch, size=(size, size), mode="area"))
        kept.append(k)
    if not out:
        return images.new_zeros((0, 3, size, size)), image_inds.new_zeros((0,))
    return torch.cat(out), torch.tensor(kept, dtype=torch.int64, device=boxes.device)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS where overlap is intersection over the smaller box (MTCNN's 'Min' mode)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = torch.argsort(scores, descending=True)
    keep: list[int] = []
    while order.numel() > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]) + 1).clamp(min=0)
        ih = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]) + 1).clamp(min=0)
        overlap = iw * ih / torch.minimum(areas[i], areas[rest])
        order = rest[overlap <= threshold]
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


# --------------------------------------------------------------------------- detector


#: Bumped when the cascade's code changes what it detects (2: PNet's box regression scaled by
#: ``x2 - x1`` as in the original MTCNN, not the inclusive width; boxes moved by up to 3 px).
REVISION = 2


class MTCNNDetector:
    """Three-stage MTCNN face detector with facenet-pytorch's pretrained weights.

    Args:
        min_face_size: smallest face side searched for, pixels (sets the first pyramid scale).
        thresholds: face-probability thresholds of PNet, RNet and ONet.
        scale_factor: ratio between successive pyramid scales (0 < factor < 1).
        device: torch device for the three networks ('cpu', 'cuda', ...).

    Raises:
        WeightsError: the weight files are missing, unreadable or do not match the networks.
        ValueError: an argument is out of range.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        device: str = "cpu",
    ) -> None:
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be at least 1 pixel, got {min_face_size}")
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities, got {thresholds}")
        self.min_face_size = int(min_face_size)
        self.thresholds = (float(thresholds[0]), float(thresholds[1]), float(thresholds[2]))
        self.scale_factor = float(scale_factor)
        self.device = torch.device(device)
        paths = weight_paths()
        self._paths = paths
        self.pnet = load_net(PNet(), paths["pnet"], self.device)
        self.rnet = load_net(RNet(), paths["rnet"], self.device)
        self.onet = load_net(ONet(), paths["onet"], self.device)
        self._digest: str | None = None

    @property
    def weights_digest(self) -> str:
        """12 hex characters: SHA-256 of the three files' SHA-256 digests (pnet, rnet, onet)
        and :data:`REVISION`, so faces found by an older cascade are recomputed."""
        if self._digest is None:
            joined = "".join(file_sha256(self._paths[n], length=64) for n in WEIGHT_FILES)
            joined += f"-r{REVISION}"
            self._digest = hashlib.sha256(joined.encode("ascii")).hexdigest()[:12]
        return self._digest

    def detect(self, frames: np.ndarray) -> list[FaceDetections]:
        """Detect faces in a batch of frames.

        Args:
            frames: ``(B, H, W, 3)`` uint8 RGB frames, all of the same size.

        Returns:
            One :class:`FaceDetections` per frame (in pixels of that frame), in input order.

        Raises:
            ValueError: ``frames`` is not a ``(B, H, W, 3)`` uint8 array.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (B, H, W, 3) RGB, got shape {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
        batch = frames.shape[0]
        if batch == 0:
            return []
        with torch.inference_mode():
            images = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
            images = images.permute(0, 3, 1, 2).float()
            return self._cascade(images)

    # The cascade works on float (B, 3, H, W) tensors holding raw 0..255 RGB values.
    def _cascade(self, images: torch.Tensor) -> list[FaceDetections]:
        batch, _, height, width = images.shape
        empty = [FaceDetections.empty() for _ in range(batch)]

        # Stage 1: PNet over the pyramid.
        boxes, inds = self._stage_pnet(images)
        if boxes.shape[0] == 0:
            return empty
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, _NMS_PYRAMID)
        boxes, inds = boxes[keep], inds[keep]
        boxes = _square(_regress(boxes[:, :4], boxes[:, 5:9], inclusive=False))

        # Stage 2: RNet on 24x24 crops of every candidate of the batch.
        boxes, inds, scores, offsets = self._stage_refine(
            images, boxes, inds, 24, self.rnet, self.thresholds[1]
        )
        if boxes.shape[0] == 0:
            return empty
        keep = batched_nms(boxes, scores, inds, _NMS_RNET)
        boxes = _square(_regress(boxes[keep], offsets[keep]))
        inds = inds[keep]

        # Stage 3: ONet on 48x48 crops, with landmarks.
        crops, usable = _crops(images, boxes, inds, 48)
        if crops.shape[0] == 0:
            return empty
        boxes, inds = boxes[usable], inds[usable]
        prob, reg, marks = self.onet(_normalise(crops))
        passed = prob[:, 1] > self.thresholds[2]
        boxes, inds, scores = boxes[passed], inds[passed], prob[passed, 1]
        reg, marks = reg[passed], marks[passed]
        if boxes.shape[0] == 0:
            return empty
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack(
            [w * marks[:, :5] + boxes[:, :1] - 1, h * marks[:, 5:] + boxes[:, 1:2] - 1], dim=2
        )
        boxes = _regress(boxes, reg)
        # From the 1-based inclusive convention to 0-based edges: x1 - 1, y1 - 1; x2, y2 stay.
        boxes = boxes - torch.tensor([1.0, 1.0, 0.0, 0.0], device=boxes.device)

        results = []
        for frame in range(batch):
            mine = (inds == frame).nonzero().flatten()
            if mine.numel() == 0:
                results.append(FaceDetections.empty())
                continue
            keep = mine[_nms_min(boxes[mine], scores[mine], _NMS_FINAL_MIN)]
            results.append(
                FaceDetections(
                    boxes=boxes[keep].cpu().numpy().astype(np.float32),
                    scores=scores[keep].cpu().numpy().astype(np.float32),
                    landmarks=points[keep].cpu().numpy().astype(np.float32),
                )
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "MTCNN on %d frame(s) of %dx%d: %s faces",
                batch,
                width,
                height,
                [len(r) for r in results],
            )
        return results

    def _stage_pnet(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates ``(M, 9)`` and their frame indices from PNet over the image pyramid."""
        height, width = images.shape[2:]
        scales = _pyramid_scales(height, width, self.min_face_size, self.scale_factor)
        all_boxes, all_inds = [], []
        for scale in scales:
            size = (int(height * scale + 1), int(width * scale + 1))
            scaled = _normalise(F.interpolate(images, size=size, mode="area"))
            prob, reg = self.pnet(scaled)
            boxes, inds = _pnet_candidates(prob, reg, scale, self.thresholds[0])
            if boxes.shape[0] == 0:
                continue
            keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, _NMS_SCALE)
            all_boxes.append(boxes[keep])
            all_inds.append(inds[keep])
        if not all_boxes:
            empty_inds = torch.zeros(0, dtype=torch.int64, device=images.device)
            return images.new_zeros((0, 9)), empty_inds
        return torch.cat(all_boxes), torch.cat(all_inds)

    @staticmethod
    def _stage_refine(
        images: torch.Tensor,
        boxes: torch.Tensor,
        inds: torch.Tensor,
        size: int,
        net: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        threshold: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score crops with ``net``; keep boxes above ``threshold`` with their regressions."""
        crops, usable = _crops(images, boxes, inds, size)
        if crops.shape[0] == 0:
            return boxes[:0], inds[:0], boxes.new_zeros((0,)), boxes.new_zeros((0, 4))
        boxes, inds = boxes[usable], inds[usable]
        prob, reg = net(_normalise(crops))[:2]
        passed = prob[:, 1] > threshold
        return boxes[passed], inds[passed], prob[passed, 1], reg[passed]
