"""Decode coverage: the fraction of a media's declared duration that actually decoded.

A truncated file (an interrupted download or copy) often still opens: its header declares the
full duration, the demuxer reads packets until the bytes end, and the decoders return the head
of the media without an error. Coverage makes that visible. Each media row of a visual, audio or
text extractor carries it in its ``coverage`` column, and a row whose coverage is below
``video.min_coverage`` stays ``ok`` with a note in its ``error`` column naming the file.

- **Video** (visual extractors): the span of the decoded sampled frames, from the first frame's
  timestamp to the last frame's timestamp plus one frame interval, over the probe's declared
  duration. The frame interval is the longer of the sampling interval (``1 / video.fps``) and
  the stream's own frame period, since the last sampled frame lies at most one sampling interval
  before the last decodable frame, and a frame lasts one frame period. The estimate is within
  one sampling interval of the decoded span. A ``video.max_frames`` cap thins the sampled frames
  evenly over the whole stream rather than stopping the decode early, so its last frame still
  lies within one sampling interval of the end and a cap does not lower coverage.
- **Audio** (audio and text extractors): the length of the decoded track over the audio
  stream's declared duration (the media's duration where the stream declares none).

Coverage is clipped to [0, 1] and is None where nothing declares a duration: still images, and
streams whose container states no length. Containers without a duration header (MPEG-TS) have
their duration estimated by FFmpeg from the bytes present, which a truncation shortens too:
coverage cannot see those truncations.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from raypipe.media.probe import MediaInfo

if TYPE_CHECKING:
    from raypipe.media.context import MediaContext


@dataclass(frozen=True)
class Coverage:
    """How much of one track decoded: ``decoded_s`` of ``declared_s`` seconds."""

    track: str
    decoded_s: float
    declared_s: float

    @property
    def fraction(self) -> float:
        """``decoded_s / declared_s`` clipped to [0, 1]."""
        return float(np.clip(self.decoded_s / self.declared_s, 0.0, 1.0))

    def note(self, path: str) -> str:
        """One line naming ``path``, what decoded and what to do about it."""
        return (
            f"{path}: {self.track} decoded {self.decoded_s:.1f} s of {self.declared_s:.1f} s "
            f"declared ({self.fraction * 100:.0f} %); the file may be truncated: re-encode or "
            "re-download it"
        )


def video_coverage(
    info: MediaInfo, first_s: float | None, last_s: float | None, fps: float
) -> Coverage | None:
    """Coverage of the decoded video frames (timestamps in seconds; None: no frame decoded).

    Args:
        info: the probe of the media.
        first_s: timestamp of the first decoded sampled frame, seconds.
        last_s: timestamp of the last decoded sampled frame, seconds.
        fps: the sampling rate, Hz (``video.fps``).

    Returns:
        None for images and media declaring no duration.
    """
    if info.is_image or not info.duration_s > 0:
        return None
    if first_s is None or last_s is None:
        return Coverage("video", 0.0, info.duration_s)
    interval = 1.0 / fps
    if info.fps > 0:
        interval = max(interval, 1.0 / info.fps)
    return Coverage("video", max(last_s - first_s, 0.0) + interval, info.duration_s)


def audio_coverage(info: MediaInfo, samples: int, sample_rate: int) -> Coverage | None:
    """Coverage of a decoded audio track of ``samples`` samples at ``sample_rate`` Hz.

    The declared length is the audio stream's own (``info.audio_duration_s``), else the media's;
    None when neither is known.
    """
    declared = info.audio_duration_s if info.audio_duration_s > 0 else info.duration_s
    if info.is_image or not declared > 0:
        return None
    return Coverage("audio", samples / sample_rate, declared)


def decoded_audio_coverage(media: MediaContext) -> Coverage | None:
    """Coverage of ``media``'s audio track, if it has been decoded (None otherwise: it is not
    decoded just for this)."""
    from raypipe.errors import MediaError
    from raypipe.media.audio import SAMPLE_RATE

    signal = media.decoded_audio()
    if signal is None:
        return None
    try:
        info = media.info  # probed once per media (already, where visual extractors ran)
    except MediaError:
        return None
    return audio_coverage(info, len(signal), SAMPLE_RATE)


def apply_coverage(
    row: MutableMapping[str, Any], coverage: Coverage | None, path: str, min_coverage: float
) -> None:
    """Set ``row["coverage"]`` (unless already set) and, on an ``ok`` row whose coverage is
    below ``min_coverage``, add the truncation note to its ``error`` (joined to any note there
    with '; ')."""
    if "coverage" in row:
        return
    row["coverage"] = None if coverage is None else coverage.fraction
    if coverage is None or row.get("status", "ok") != "ok" or coverage.fraction >= min_coverage:
        return
    notes = [row["error"]] if row.get("error") else []
    row["error"] = "; ".join([*notes, coverage.note(path)])


def add_audio_coverage(row: MutableMapping[str, Any], media: MediaContext) -> None:
    """:func:`apply_coverage` with the coverage of ``media``'s decoded audio track (audio and
    text extractors; their rows are written by :func:`raypipe.extractors.process.process_media`).
    """
    apply_coverage(row, decoded_audio_coverage(media), media.path, media.min_coverage)
