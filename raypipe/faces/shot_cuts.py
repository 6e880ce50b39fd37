"""Shot cuts between consecutive sampled frames, from tiny grey thumbnails.

A cut is declared before frame ``i`` when the mean absolute difference between the 32x32 grey
thumbnails of frames ``i - 1`` and ``i`` is at least ``threshold`` grey levels (0..255). Pans and
zooms change a thumbnail gradually; a cut replaces it. A false cut only costs one more face
detection (keyframe tracking re-detects on both sides of it), so the threshold leans low.
"""

from __future__ import annotations

import numpy as np

#: Side of the grey thumbnails compared, pixels.
THUMB_SIDE = 32


def thumbnails(frames: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """``(B, side, side)`` float32 grey thumbnails (0..255) of ``(B, H, W, 3)`` RGB frames, by
    block means over a regular grid (no resampling library needed)."""
    frames = np.asarray(frames)
    batch, height, width = frames.shape[:3]
    grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    rows = np.linspace(0, height, side + 1).astype(int)
    cols = np.linspace(0, width, side + 1).astype(int)
    # Sums over row bands then column bands via cumulative sums (works when H or W < side).
    csum = np.cumsum(np.pad(grey, ((0, 0), (1, 0), (1, 0))), axis=1).cumsum(axis=2)
    r0, r1, c0, c1 = rows[:-1], rows[1:], cols[:-1], cols[1:]
    r1 = np.maximum(r1, r0 + 1).clip(max=height)
    c1 = np.maximum(c1, c0 + 1).clip(max=width)
    r0, c0 = np.minimum(r0, r1 - 1), np.minimum(c0, c1 - 1)
    total = (
        csum[:, r1][:, :, c1]
        - csum[:, r0][:, :, c1]
        - csum[:, r1][:, :, c0]
        + csum[:, r0][:, :, c0]
    )
    area = (r1 - r0)[:, None] * (c1 - c0)[None, :]
    return (total / area[None]).astype(np.float32).reshape(batch, side, side)


def shot_cuts(frames: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """``(B,)`` bool: ``True`` at frame ``i`` when a cut lies between frames ``i - 1`` and ``i``
    (never at frame 0).

    Args:
        frames: ``(B, H, W, 3)`` uint8 RGB frames in time order.
        threshold: least mean absolute thumbnail difference that is a cut, grey levels (0..255).
    """
    cuts = np.zeros(len(frames), dtype=bool)
    if len(frames) > 1:
        thumbs = thumbnails(frames)
        cuts[1:] = np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2)) >= threshold
    return cuts
