"""Probing a media file before decoding: does it open, which streams, how long.

Bad files stop here with a :class:`~raypipe.errors.MediaError` whose message is one sentence
naming the file, what is wrong and what to do about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av

from raypipe.errors import MediaError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learns about one file. Sizes in pixels, durations in seconds, rates in Hz."""

    path: str
    container: str
    has_video: bool
    has_audio: bool
    width: int
    height: int
    fps: float
    duration_s: float
    audio_sample_rate: int
    audio_channels: int


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with FFmpeg (PyAV), turning every failure into one clear MediaError."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file does not exist; fix the manifest path.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes); re-copy or re-export it.")
    try:
        return av.open(str(path), timeout=30.0)
    except av.error.InvalidDataError:
        raise MediaError(
            f"{path}: not a readable media container (FFmpeg found invalid data; the file may "
            "be truncated or not a video); re-encode or re-download it."
        ) from None
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{path}: cannot be opened by FFmpeg ({exc}); re-encode it.") from None


def probe(path: str | Path) -> MediaInfo:
    """Describe the streams of ``path``.

    Raises:
        MediaError: the file is missing, empty or not a media container.
    """
    with open_container(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = 0.0
        if video is not None and video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = (video.average_rate or video.base_rate or 0) if video is not None else 0
        return MediaInfo(
            path=str(path),
            container=container.format.name,
            has_video=video is not None,
            has_audio=audio is not None,
            width=int(video.codec_context.width or 0) if video is not None else 0,
            height=int(video.codec_context.height or 0) if video is not None else 0,
            fps=float(rate),
            duration_s=duration,
            audio_sample_rate=int(audio.codec_context.sample_rate or 0) if audio else 0,
            audio_channels=int(audio.codec_context.channels or 0) if audio else 0,
        )
