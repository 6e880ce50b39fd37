"""Demuxing a media file's first audio stream to mono float32 at a fixed sample rate (PyAV)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from raypipe.errors import MediaError
from raypipe.media.probe import open_container

SAMPLE_RATE = 16_000


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return the first audio stream of ``path`` as mono float32 in [-1, 1] at ``sample_rate`` Hz.

    Raises:
        MediaError: the file cannot be opened, has no audio stream, or it cannot be decoded.
    """
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream; audio extractors need one.")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise MediaError(
                f"{path}: audio stream cannot be decoded ({exc}); re-encode the file."
            ) from None
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
