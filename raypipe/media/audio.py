"""Demuxing a media file's first audio stream to mono float32 at a fixed sample rate (PyAV).

Any container, codec, channel count and sample rate FFmpeg reads is resampled and its channels
averaged to mono. :func:`iter_audio` streams the track in chunks so long files never need their
whole decoded track at the source rate in memory; :func:`load_audio` joins the chunks (16 kHz mono
float32 is 3.8 MB per minute). A file without an audio stream raises :class:`NoAudioError`,
which audio extractors turn into a ``no_audio`` row rather than a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from raypipe.errors import MediaError
from raypipe.media.probe import open_container

#: Sample rate of every decoded audio track, Hz.
SAMPLE_RATE = 16_000


class NoAudioError(MediaError):
    """The media has no audio stream (a silent video or an image): nothing to extract."""


def has_audio(path: str | Path) -> bool:
    """Whether ``path`` holds at least one audio stream (raises MediaError if unreadable)."""
    with open_container(path) as container:
        return bool(container.streams.audio)


def iter_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, chunk_s: float = 30.0
) -> Iterator[np.ndarray]:
    """Yield the first audio stream of ``path`` as mono float32 chunks in [-1, 1].

    Args:
        path: any media file FFmpeg reads.
        sample_rate: output rate, Hz.
        chunk_s: length of each yielded chunk, seconds (the last one may be shorter).

    Raises:
        NoAudioError: the file has no audio stream.
        MediaError: the file cannot be opened or its audio cannot be decoded.
    """
    chunk_samples = max(1, round(chunk_s * sample_rate))
    with open_container(path) as container:
        if not container.streams.audio:
            raise NoAudioError(f"{path}: has no audio stream; audio extractors record no_audio.")
        stream = container.streams.audio[0]
        # Resample every channel, then average them: a plain mean keeps the level of a
        # centred voice and cannot clip (FFmpeg's own downmix scales stereo by 1/sqrt(2)).
        # Packed (interleaved) samples: PyAV mishandles planar frames of 8 or more channels.
        resampler = av.AudioResampler(format="flt", rate=sample_rate)
        pending: list[np.ndarray] = []
        held = 0
        try:
            frames = container.decode(stream)
            for frame in frames:
                frame.pts = None  # resample by sample count; broken timestamps do not matter
                for out in resampler.resample(frame):
                    part = _mono(out)
                    pending.append(part)
                    held += len(part)
                while held >= chunk_samples:
                    joined = np.concatenate(pending)
                    yield joined[:chunk_samples].astype(np.float32, copy=False)
                    rest = joined[chunk_samples:]
                    pending, held = ([rest] if len(rest) else []), len(rest)
            for out in resampler.resample(None):
                part = _mono(out)
                pending.append(part)
                held += len(part)
        except av.error.FFmpegError as exc:
            raise MediaError(
                f"{path}: audio stream cannot be decoded ({exc}); re-encode the file."
            ) from None
        if held:
            joined = np.concatenate(pending)
            for start in range(0, len(joined), chunk_samples):
                yield joined[start : start + chunk_samples].astype(np.float32, copy=False)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """Mean over the channels of a packed float frame."""
    channels = frame.layout.nb_channels
    return frame.to_ndarray().reshape(-1, channels).mean(axis=1, dtype=np.float32)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Return the first audio stream of ``path`` as mono float32 in [-1, 1] at ``sample_rate`` Hz.

    Raises:
        NoAudioError: the file has no audio stream.
        MediaError: the file cannot be opened or its audio cannot be decoded.
    """
    chunks = list(iter_audio(path, sample_rate))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
