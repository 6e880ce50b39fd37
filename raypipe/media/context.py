"""One media file as the extractors see it: probed, decoded and analysed once, lazily.

Several extractors share a single :class:`MediaContext`, so a video is probed once, decoded
once and its faces detected once, however many extractors read it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.media.audio import SAMPLE_RATE, load_audio
from raypipe.media.probe import MediaInfo, probe
from raypipe.media.video import SampledFrames, decode_frames


class MediaContext:
    """Lazily computed views of one media file; results are cached (errors are re-raised).

    Args:
        media_id: the manifest id.
        path: the media file.
        fps: frame sampling rate in Hz.
        max_side: longest side of decoded frames, pixels.
        max_frames: at most this many frames are sampled (evenly thinned beyond).
    """

    def __init__(
        self,
        media_id: str,
        path: str | Path,
        fps: float = 5.0,
        max_side: int = 320,
        max_frames: int = 300,
    ) -> None:
        self.media_id = media_id
        self.path = str(path)
        self.fps = fps
        self.max_side = max_side
        self.max_frames = max_frames
        self._cache: dict[str, Any] = {}
        #: Seconds spent per stage (probe, decode, audio, faces...), for the quality summary.
        self.seconds: dict[str, float] = defaultdict(float)

    def _cached(self, key: str, compute: Any) -> Any:
        if key not in self._cache:
            start = time.perf_counter()
            try:
                self._cache[key] = ("ok", compute())
            except Exception as exc:  # cached so a second extractor does not redo the work
                self._cache[key] = ("error", exc)
            finally:
                self.seconds[key] += time.perf_counter() - start
        state, value = self._cache[key]
        if state == "error":
            raise value
        return value

    @property
    def info(self) -> MediaInfo:
        """Probe result (raises MediaError for unreadable files)."""
        return self._cached("probe", lambda: probe(self.path))

    @property
    def frames(self) -> SampledFrames:
        """Frames sampled by timestamp (raises MediaError when undecodable)."""
        return self._cached(
            "decode", lambda: decode_frames(self.info, self.fps, self.max_side, self.max_frames)
        )

    @property
    def audio(self) -> np.ndarray:
        """Mono float32 audio at :data:`~raypipe.media.audio.SAMPLE_RATE` Hz."""
        return self._cached("audio", lambda: load_audio(self.path, SAMPLE_RATE))

    def shared(self, key: str, compute: Any) -> Any:
        """Cache any derived result (e.g. face detections) under ``key`` for other extractors."""
        return self._cached(key, compute)
