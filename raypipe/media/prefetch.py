"""Probing and decoding a media ahead of the workers that embed it (CPU decode tasks).

On clusters where models sit on GPUs, decoding on the GPU workers' CPUs would leave the GPUs
waiting; :func:`prefetch` runs in CPU tasks instead, probes the file and, when its sampled frames
are few enough to travel as one object, decodes them. The worker then builds its
:class:`~raypipe.media.context.MediaContext` from the result. Long media are left to the worker,
which streams them window by window. Errors travel as messages, so a bad file still becomes
its ``failed`` rows in the worker, with the same reason as without prefetching.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from raypipe.errors import MediaError
from raypipe.media.decoder_process import shared_decoder
from raypipe.media.probe import MediaInfo
from raypipe.media.video import SampledFrames


@dataclass
class Prefetched:
    """What a decode task learnt about one media.

    Attributes:
        info: the probe, or None when probing failed.
        windows: the sampled frames in windows, or None when the worker should decode.
        probe_error: the MediaError message of a failed probe.
        decode_error: the MediaError message of a failed decode (audio may still work).
        seconds: seconds spent probing and decoding.
    """

    info: MediaInfo | None = None
    windows: list[SampledFrames] | None = None
    probe_error: str | None = None
    decode_error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def prefetch(
    path: str,
    fps: float,
    max_side: int,
    max_frames: int | None,
    window_frames: int,
    decode_timeout_s: float,
    max_prefetch_frames: int,
    decode: bool = True,
) -> Prefetched:
    """Probe ``path`` and, if ``decode`` and it samples at most ``max_prefetch_frames``
    frames, decode them (in this process's decoder child)."""
    decoder = shared_decoder(decode_timeout_s)
    out = Prefetched()
    start = time.perf_counter()
    try:
        out.info = decoder.probe(path)
    except MediaError as exc:
        out.probe_error = str(exc)
        return out
    finally:
        out.seconds["probe"] = time.perf_counter() - start
    info = out.info
    expected = 1 if info.is_image else int(info.duration_s * fps) + 2
    if max_frames is not None:
        expected = min(expected, max_frames)
    if not decode or not info.has_video or expected > max_prefetch_frames:
        return out
    start = time.perf_counter()
    try:
        out.windows = list(decoder.windows(info, fps, max_side, max_frames, window_frames))
    except MediaError as exc:
        out.decode_error = str(exc)
        out.windows = []
    out.seconds["decode"] = time.perf_counter() - start
    return out
