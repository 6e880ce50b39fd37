"""Choosing and cropping a detected face: square, centred, zero-padded past the frame's edges."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from raypipe.faces.mtcnn import FaceDetections


def largest_face_index(det: FaceDetections) -> int | None:
    """Index of the face with the largest box area (pixels²), or ``None`` when there is none."""
    if len(det) == 0:
        return None
    boxes = np.asarray(det.boxes, dtype=np.float64)
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    heights = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    return int(np.argmax(widths * heights))


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, margin: float = 0.2) -> np.ndarray:
    """Square crop around a face box, resized to ``size`` x ``size``.

    The square is centred on the box, its side is ``max(width, height) * (1 + margin)`` pixels;
    where it leaves the frame the crop is filled with zeros (black). Resizing is bilinear with
    antialiasing.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB frame.
        box: ``x1, y1, x2, y2`` in pixels of ``frame`` (as in :class:`FaceDetections`).
        size: side of the returned crop, pixels.
        margin: extra context as a fraction of the box's longer side (0 = tight).

    Returns:
        ``(size, size, 3)`` uint8 RGB crop.

    Raises:
        ValueError: the frame is not ``(H, W, 3)`` uint8, the box is not four finite numbers
            with ``x2 > x1`` and ``y2 > y1``, ``size < 1`` or ``margin < 0``.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    coords = np.asarray(box, dtype=np.float64).reshape(-1)
    if coords.shape != (4,) or not np.all(np.isfinite(coords)):
        raise ValueError(f"box must be four finite numbers x1, y1, x2, y2, got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in coords)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box must have x2 > x1 and y2 > y1, got {coords.tolist()}")
    if size < 1:
        raise ValueError(f"size must be at least 1 pixel, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")

    side = max(1, round(max(x2 - x1, y2 - y1) * (1.0 + margin)))
    left = math.floor((x1 + x2) / 2.0 - side / 2.0 + 0.5)
    top = math.floor((y1 + y2) / 2.0 - side / 2.0 + 0.5)
    height, width = frame.shape[:2]
    square = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + side, width), min(top + side, height)
    if sx1 > sx0 and sy1 > sy0:
        square[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = frame[sy0:sy1, sx0:sx1]
    if side == size:
        return square
    with torch.inference_mode():
        tensor = torch.from_numpy(square).permute(2, 0, 1)[None].float()
        resized = F.interpolate(
            tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out = resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(out.numpy())
