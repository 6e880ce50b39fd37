"""Write RGB frames (and optional mono audio) to an .mp4 that PyAV and decord can both read.

Video is H.264 (``libx264``, yuv420p) when the PyAV build has that encoder, else MPEG-4 Part 2
(``mpeg4``); audio is AAC. Files are written atomically: to a temporary name in the target's
folder, then moved into place with :func:`os.replace`, so a reader never sees half a clip.
"""

from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from raypipe.errors import MediaError

log = logging.getLogger(__name__)

#: AAC encoder frame length in samples (the encoder consumes audio in blocks of this size).
_AAC_FRAME = 1024


@lru_cache(maxsize=1)
def video_codec() -> str:
    """The video encoder :func:`write_clip` uses: ``libx264`` when available, else ``mpeg4``."""
    try:
        av.codec.Codec("libx264", "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        log.warning("PyAV has no libx264 encoder; writing MPEG-4 Part 2 (mpeg4) video instead")
        return "mpeg4"
    return "libx264"


def _check_inputs(
    frames: np.ndarray, fps: float, audio: np.ndarray | None, sample_rate: int
) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        raise ValueError(f"frames must be a (T, H, W, 3) RGB array, got shape {shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    n, height, width, _ = frames.shape
    if n == 0:
        raise ValueError("frames must hold at least one frame")
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even for yuv420p, got {height}x{width}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if audio is not None:
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")


def _encode(
    path: Path,
    codec: str,
    frames: np.ndarray,
    rate: Fraction,
    audio: np.ndarray | None,
    sample_rate: int,
) -> None:
    n, height, width, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        vstream = container.add_stream(codec, rate=rate)
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        frame_time_base = 1 / rate
        vstream.time_base = frame_time_base
        if codec == "libx264":
            # No B-frames: every frame decodes in order, which keeps frame counts and seeking
            # identical in PyAV and decord. crf 18 is visually lossless at these sizes.
            vstream.options = {"preset": "veryfast", "crf": "18", "bf": "0"}
        else:
            # About 1.5 bits per pixel per frame, at least 1 Mbit/s: little visible loss.
            vstream.bit_rate = max(1_000_000, int(1.5 * width * height * float(rate)))
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
            astream.time_base = Fraction(1, sample_rate)
        # The muxer may change the streams' time bases when it writes the header, so frame
        # timestamps are given in fixed time bases of their own (1/fps and 1/sample_rate).
        for index in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            frame.pts = index
            frame.time_base = frame_time_base
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode(None):
            container.mux(packet)
        if astream is not None and audio is not None:
            samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
            for start in range(0, len(samples), _AAC_FRAME):
                block = samples[start : start + _AAC_FRAME]
                aframe = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, sample_rate)
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode(None):
                container.mux(packet)


def write_clip(
    path: Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    codec: str | None = None,
) -> None:
    """Write ``frames`` (and optionally ``audio``) to the .mp4 file ``path``, atomically.

    Args:
        path: Output file; its folder is created if missing. An existing file is replaced.
        frames: ``(T, H, W, 3)`` uint8 RGB frames; H and W (pixels) must be even.
        fps: Frame rate in frames per second (non-integer rates such as 29.97 are kept exactly
            to 1/1001 precision).
        audio: Optional mono float32 samples in [-1, 1] (values outside are clipped), encoded
            as AAC.
        sample_rate: Sample rate of ``audio`` in Hz.
        codec: Video encoder, ``"libx264"`` or ``"mpeg4"``; default :func:`video_codec`.

    Raises:
        ValueError: If the arrays have the wrong shape, dtype or rate.
        MediaError: If the file cannot be written (the message names the file).
    """
    _check_inputs(frames, fps, audio, sample_rate)
    if codec not in (None, "libx264", "mpeg4"):
        raise ValueError(f"codec must be 'libx264' or 'mpeg4', got {codec!r}")
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        tmp = Path(tmp_name)
        _encode(tmp, codec or video_codec(), frames, rate, audio, sample_rate)
        # mkstemp creates owner-only files; give the clip the usual permissions for new files.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)
        os.replace(tmp, path)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(
            f"Cannot write clip '{path}' ({exc}); check that its folder is writable and has space."
        ) from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    log.debug(
        "wrote %s (%d frames at %s fps, audio=%s)", path, len(frames), rate, audio is not None
    )
