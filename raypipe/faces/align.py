"""Five-point face alignment: a similarity transform of the landmarks onto a fixed template.

The template is the widely used 112x112 five-point layout (eyes, nose tip, mouth corners) of
face-recognition crops, scaled to the requested crop size; ``margin`` shrinks it towards the
centre so more context around the face is kept. The transform (rotation, uniform scale,
translation; no shear) is the least-squares fit of Umeyama (1991). All faces of a batch of frames
are warped at once with bilinear sampling; pixels that fall outside the frame are black.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

#: (x, y) pixels in a 112x112 crop: left eye, right eye, nose, mouth left, mouth right.
TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def template(size: int, margin: float = 0.0) -> np.ndarray:
    """The five target points (pixels) in a ``size`` x ``size`` crop, shrunk by ``margin``."""
    if size < 8:
        raise ValueError(f"aligned crops need at least 8 pixels a side, got {size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    points = TEMPLATE_112 * (size / 112.0)
    centre = size / 2.0
    return centre + (points - centre) / (1.0 + margin)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix ``M`` of the similarity that best maps ``source`` points onto ``target``.

    ``target ~= source @ M[:, :2].T + M[:, 2]`` in the least-squares sense (Umeyama 1991).
    Both are ``(K, 2)`` arrays of (x, y) pixels with K >= 2.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    covariance = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(covariance)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rotation = u @ d @ vt
    variance = (sc**2).sum() / len(src)
    scale = float(np.trace(np.diag(s) @ d) / variance) if variance > 0 else 1.0
    shift = mu_d - scale * rotation @ mu_s
    return np.hstack([scale * rotation, shift[:, None]])


def align_faces(
    frames: np.ndarray,
    frame_index: np.ndarray,
    landmarks: np.ndarray,
    size: int,
    margin: float = 0.0,
    chunk: int = 32,
) -> np.ndarray:
    """Aligned square crops of faces, one per landmark set.

    Args:
        frames: ``(B, H, W, 3)`` uint8 RGB frames.
        frame_index: ``(K,)`` the frame each face is in.
        landmarks: ``(K, 5, 2)`` (x, y) pixels of the five points (MTCNN order).
        size: side of the crops, pixels (e.g. 48, 64, 112, 224).
        margin: extra context around the face, as a fraction of the template's extent.
        chunk: faces warped per call (bounds memory).

    Returns:
        ``(K, size, size, 3)`` uint8 RGB crops.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (B, H, W, 3) uint8 RGB, got {frames.shape}")
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    frame_index = np.asarray(frame_index, dtype=np.int64).reshape(-1)
    if len(frame_index) != len(landmarks):
        raise ValueError("frame_index and landmarks must describe the same faces")
    count = len(landmarks)
    out = np.zeros((count, size, size, 3), np.uint8)
    if count == 0:
        return out
    points = template(size, margin)
    height, width = frames.shape[1:3]
    # Output pixel (u, v) samples the frame at M @ (u, v, 1): the fit from template to face.
    grid_v, grid_u = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    uv1 = np.stack([grid_u, grid_v, np.ones_like(grid_u)], -1).reshape(-1, 3).astype(np.float64)
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        maps = np.stack([similarity_transform(points, landmarks[k]) for k in range(start, stop)])
        xy = np.einsum("pc,krc->kpr", uv1, maps)  # (k, size*size, 2) source pixels
        norm = np.empty_like(xy)
        norm[..., 0] = (2.0 * xy[..., 0] + 1.0) / width - 1.0
        norm[..., 1] = (2.0 * xy[..., 1] + 1.0) / height - 1.0
        grid = torch.from_numpy(norm.reshape(stop - start, size, size, 2)).float()
        source = torch.from_numpy(frames[frame_index[start:stop]]).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            warped = F.grid_sample(
                source, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
        out[start:stop] = warped.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
