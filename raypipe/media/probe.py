"""Probing a media file before decoding: does it open, which streams, how long, how rotated.

Bad files stop here with a :class:`~raypipe.errors.MediaError` whose message is one sentence
naming the file, what is wrong and what to do about it. The frame count and the frame-rate mode
come from the packets of the video stream (demuxed, not decoded), not from header metadata,
which real corpora often get wrong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from raypipe.errors import MediaError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

#: Relative spread of frame durations above which a stream counts as variable frame rate.
_VFR_TOLERANCE = 0.05


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learns about one file. Sizes in pixels, durations in seconds, rates in Hz.

    ``width`` and ``height`` are the displayed size (after rotation); ``coded_width`` and
    ``coded_height`` the size stored in the stream. ``rotation`` is the counter-clockwise
    rotation in degrees (0, 90, 180, 270) that the display matrix asks for. ``frame_count`` is
    counted from the stream's packets; ``header_frames`` is what the header claims (0: unknown).
    ``fps_mode`` is 'constant', 'variable' or 'none' (no video, or an image).
    """

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
    is_image: bool = False
    coded_width: int = 0
    coded_height: int = 0
    rotation: int = 0
    frame_count: int = 0
    header_frames: int = 0
    fps_mode: str = "none"
    video_codec: str = ""
    #: Presentation time of the last video packet, seconds on the stream's clock (-1: unknown).
    last_frame_s: float = -1.0
    #: Duration the audio stream declares, seconds (0: no audio stream, or none declared).
    audio_duration_s: float = 0.0


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with FFmpeg (PyAV), turning every failure into one clear MediaError."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file; fix the manifest path.")
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


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` names a still image by its suffix (jpg, png, bmp, webp, tiff)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _normalise_rotation(degrees: float | int | None) -> int:
    if degrees is None or not np.isfinite(degrees):
        return 0
    return round(float(degrees) / 90.0) % 4 * 90


def _frame_rotation(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """Counter-clockwise display rotation of the first decodable frame (0 if none decodes)."""
    try:
        for frame in container.decode(stream):
            return _normalise_rotation(getattr(frame, "rotation", 0))
    except av.error.FFmpegError:
        return 0
    return 0


def packet_times(container: av.container.InputContainer, stream: av.VideoStream) -> np.ndarray:
    """Presentation times (seconds, ascending) of every video packet, by demuxing only."""
    times: list[float] = []
    base = float(stream.time_base) if stream.time_base is not None else 0.0
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            times.append(packet.pts * base)
    except av.error.FFmpegError as exc:  # truncated tails: keep what was readable
        log.debug("demux stopped early on %s: %s", container.name, exc)
    return np.sort(np.asarray(times, dtype=np.float64))


def fps_mode(times_s: np.ndarray) -> str:
    """'constant' when the gaps between frame times agree within 5 %, else 'variable'."""
    if len(times_s) < 3:
        return "constant" if len(times_s) else "none"
    gaps = np.diff(times_s)
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        return "variable"
    median = float(np.median(gaps))
    spread = float(np.max(np.abs(gaps - median))) / median
    return "constant" if spread <= _VFR_TOLERANCE else "variable"


def probe_image(path: str | Path) -> MediaInfo:
    """Describe a still image (read with Pillow): one frame, no audio.

    Raises:
        MediaError: the file is missing, empty or not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file; fix the manifest path.")
    if not path.is_file():
        raise MediaError(f"{path}: file does not exist; fix the manifest path.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes); re-copy or re-export it.")
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            width, height = upright.size
            fmt = (image.format or "image").lower()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(
            f"{path}: not a readable image ({type(exc).__name__}: {exc}); re-export it."
        ) from None
    return MediaInfo(
        path=str(path),
        container=fmt,
        has_video=True,
        has_audio=False,
        width=width,
        height=height,
        fps=0.0,
        duration_s=0.0,
        audio_sample_rate=0,
        audio_channels=0,
        is_image=True,
        coded_width=width,
        coded_height=height,
        frame_count=1,
        header_frames=1,
        fps_mode="none",
        video_codec=fmt,
    )


def probe(path: str | Path) -> MediaInfo:
    """Describe the streams of ``path`` (a video, an audio file or a still image).

    Raises:
        MediaError: the file is missing, empty or not a media container.
    """
    if is_image_path(path):
        return probe_image(path)
    with open_container(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is not None and container.format.name in {"image2", "png_pipe", "jpeg_pipe"}:
            container.close()
            return probe_image(path)
        duration = 0.0
        if video is not None and video.duration is not None and video.time_base is not None:
            duration = float(video.duration * video.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = float((video.average_rate or video.base_rate or 0) if video is not None else 0)
        coded_w = int(video.codec_context.width or 0) if video is not None else 0
        coded_h = int(video.codec_context.height or 0) if video is not None else 0
        rotation, count, mode, codec, header, last = 0, 0, "none", "", 0, -1.0
        if video is not None:
            codec = video.codec_context.name or ""
            header = int(video.frames or 0)
            rotation = _frame_rotation(container, video)
        sample_rate = int(audio.codec_context.sample_rate or 0) if audio else 0
        audio_duration = 0.0
        if audio is not None and audio.duration is not None and audio.time_base is not None:
            audio_duration = float(audio.duration * audio.time_base)
        channels = int(audio.codec_context.channels or 0) if audio else 0
        container_name = container.format.name
    if video is not None:
        # A fresh open: demuxing after the first decode would skip the packets it consumed.
        with open_container(path) as again:
            times = packet_times(again, again.streams.video[0])
        count = len(times)
        mode = fps_mode(times)
        last = float(times[-1]) if count else -1.0
        if count >= 2:
            duration = max(duration, float(times[-1] - times[0]) + 1.0 / max(rate, 1e-6))
            if rate <= 0:
                rate = (count - 1) / max(float(times[-1] - times[0]), 1e-6)
        if header and header != count:
            log.info("%s: header claims %d frames, packets hold %d", path, header, count)
    swap = rotation in (90, 270)
    return MediaInfo(
        path=str(path),
        container=container_name,
        has_video=video is not None,
        has_audio=audio is not None,
        width=coded_h if swap else coded_w,
        height=coded_w if swap else coded_h,
        fps=rate,
        duration_s=duration,
        audio_sample_rate=sample_rate,
        audio_channels=channels,
        coded_width=coded_w,
        coded_height=coded_h,
        rotation=rotation,
        frame_count=count,
        header_frames=header,
        fps_mode=mode,
        video_codec=codec,
        last_frame_s=last,
        audio_duration_s=audio_duration,
    )
