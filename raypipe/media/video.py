"""Decoding video frames sampled by timestamp at a target rate, resized at decode (decord)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import decord
import numpy as np

from raypipe.errors import MediaError
from raypipe.media.probe import MediaInfo

log = logging.getLogger(__name__)

#: Frames fetched from decord per call, so memory stays bounded by this many resized frames.
_CHUNK = 32


@dataclass(frozen=True)
class SampledFrames:
    """Frames sampled from one video.

    Attributes:
        frames: (N, H, W, 3) uint8 RGB, already resized.
        timestamps_s: (N,) presentation time of each frame, seconds from the start.
        source_indices: (N,) index of each frame in the decoded stream.
    """

    frames: np.ndarray
    timestamps_s: np.ndarray
    source_indices: np.ndarray


def decode_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Output (width, height) in pixels: scaled so the longer side is at most ``max_side``.

    Both sides are kept even (most codecs and the face detector's pyramid prefer it).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid frame size {width}x{height}")
    scale = min(1.0, max_side / max(width, height))
    out_w = max(2, round(width * scale / 2) * 2)
    out_h = max(2, round(height * scale / 2) * 2)
    return out_w, out_h


def sample_indices(frame_times_s: np.ndarray, fps: float, max_frames: int) -> np.ndarray:
    """Indices of the frames shown at times 0, 1/fps, 2/fps, ... (by timestamp, VFR-safe).

    ``frame_times_s`` are the start times of the decoded frames in seconds, ascending.
    For each target time the last frame starting at or before it is chosen; repeats are dropped.
    """
    if len(frame_times_s) == 0:
        return np.zeros(0, dtype=np.int64)
    start = float(frame_times_s[0])
    end = float(frame_times_s[-1])
    targets = start + np.arange(0.0, max(end - start, 0.0) + 1e-6, 1.0 / fps)
    picks = np.searchsorted(frame_times_s, targets + 1e-6, side="right") - 1
    picks = np.unique(np.clip(picks, 0, len(frame_times_s) - 1))
    if len(picks) > max_frames:
        keep = np.linspace(0, len(picks) - 1, max_frames).round().astype(int)
        picks = picks[keep]
    return picks


def decode_frames(info: MediaInfo, fps: float, max_side: int, max_frames: int) -> SampledFrames:
    """Decode frames of ``info.path`` at ``fps`` Hz (by timestamp), longer side <= ``max_side``.

    Raises:
        MediaError: the video stream cannot be decoded.
    """
    if not info.has_video:
        raise MediaError(
            f"{info.path}: has no video stream; visual extractors need a video or image file."
        )
    width, height = decode_size(info.width, info.height, max_side)
    try:
        reader = decord.VideoReader(
            info.path, ctx=decord.cpu(0), width=width, height=height, num_threads=1
        )
        count = len(reader)
        if count == 0:
            raise MediaError(f"{info.path}: video stream holds no decodable frames; re-encode it.")
        times = np.asarray(reader.get_frame_timestamp(np.arange(count)))[:, 0]
        picks = sample_indices(times, fps, max_frames)
        chunks = [
            reader.get_batch(picks[i : i + _CHUNK]).asnumpy() for i in range(0, len(picks), _CHUNK)
        ]
    except (decord.DECORDError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "decode error"
        raise MediaError(
            f"{info.path}: video cannot be decoded ({first}); the file may be truncated or "
            "corrupt; re-encode it."
        ) from None
    frames = np.concatenate(chunks) if chunks else np.zeros((0, height, width, 3), np.uint8)
    return SampledFrames(
        frames=frames, timestamps_s=times[picks].astype(np.float32), source_indices=picks
    )
