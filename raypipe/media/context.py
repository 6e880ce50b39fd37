"""One media file as the extractors see it: probed, decoded and analysed once, lazily.

Several extractors share a single :class:`MediaContext`, so a video is probed once, decoded
once and its faces detected once, however many extractors read it. Probing, decoding and audio
demuxing run in the worker's decoder child process (:mod:`raypipe.media.decoder_process`), so a
file that hangs or crashes a native decoder fails alone. Frames arrive in windows
(:meth:`MediaContext.windows`) so memory stays bounded by one window; :attr:`MediaContext.frames`
joins them for short media.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raypipe.errors import MediaError
from raypipe.media.audio import SAMPLE_RATE
from raypipe.media.decoder_process import DecoderProcess, shared_decoder
from raypipe.media.prefetch import Prefetched
from raypipe.media.probe import MediaInfo
from raypipe.media.video import SampledFrames, decode_size


class MediaContext:
    """Lazily computed views of one media file; results are cached (errors are re-raised).

    Args:
        media_id: the manifest id.
        path: the media file.
        fps: frame sampling rate in Hz.
        max_side: longest side of decoded frames, pixels.
        max_frames: at most this many frames are sampled (evenly thinned beyond); None: all.
        window_frames: frames per decoded window (bounds memory), frames.
        decode_timeout_s: seconds the decoder may stay silent before it counts as hung.
        min_coverage: fraction (0 to 1) of the declared duration that must decode; rows of
            media decoding less get a truncation note (:mod:`raypipe.media.coverage`).
        decoder: the decoder child to use; default: this process's shared one.
        prefetched: probe and frames computed ahead by a decode task
            (:func:`raypipe.media.prefetch.prefetch`); used instead of probing and decoding.
    """

    def __init__(
        self,
        media_id: str,
        path: str | Path,
        fps: float = 5.0,
        max_side: int = 320,
        max_frames: int | None = 300,
        window_frames: int = 64,
        decode_timeout_s: float = 120.0,
        min_coverage: float = 0.9,
        decoder: DecoderProcess | None = None,
        prefetched: Prefetched | None = None,
    ) -> None:
        self.media_id = media_id
        self.path = str(path)
        self.fps = fps
        self.max_side = max_side
        self.max_frames = max_frames
        self.window_frames = window_frames
        self.min_coverage = min_coverage
        self.decoder = decoder or shared_decoder(decode_timeout_s)
        self._cache: dict[str, Any] = {}
        #: Seconds spent per stage (probe, decode, audio, faces...), for the quality summary.
        self.seconds: dict[str, float] = defaultdict(float)
        self._prefetched = prefetched
        if prefetched is not None:
            self.seconds.update(prefetched.seconds)
            if prefetched.probe_error is not None:
                self._cache["probe"] = ("error", MediaError(prefetched.probe_error))
            elif prefetched.info is not None:
                self._cache["probe"] = ("ok", prefetched.info)

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
        return self._cached("probe", lambda: self.decoder.probe(self.path))

    def windows(self) -> Iterator[SampledFrames]:
        """Sampled frames in windows of at most ``window_frames`` (decoded afresh per call).

        Time spent waiting for the decoder is added to ``seconds["decode"]``.

        Raises:
            MediaError: the file has no video stream, cannot be decoded, or hangs or crashes
                the decoder.
        """
        info = self.info
        ahead = self._prefetched
        if ahead is not None and ahead.windows is not None:
            if ahead.decode_error is not None:
                raise MediaError(ahead.decode_error)
            yield from ahead.windows
            return
        stream = self.decoder.windows(
            info, self.fps, self.max_side, self.max_frames, self.window_frames
        )
        while True:
            start = time.perf_counter()
            try:
                part = next(stream)
            except StopIteration:
                return
            finally:
                self.seconds["decode"] += time.perf_counter() - start
            yield part

    @property
    def frames(self) -> SampledFrames:
        """All sampled frames at once (short media; long ones should use :meth:`windows`)."""

        def join() -> SampledFrames:
            width, height = decode_size(self.info.width, self.info.height, self.max_side)
            return SampledFrames.concatenate(list(self.windows()), height, width)

        return self._cached("frames", join)

    @property
    def audio(self) -> np.ndarray:
        """Mono float32 audio at :data:`~raypipe.media.audio.SAMPLE_RATE` Hz."""
        return self._cached("audio", lambda: self.decoder.audio(self.path, SAMPLE_RATE))

    def decoded_audio(self) -> np.ndarray | None:
        """The audio track if :attr:`audio` has decoded it (None otherwise; nothing is decoded)."""
        state, value = self._cache.get("audio", ("error", None))
        return value if state == "ok" else None

    def shared(self, key: str, compute: Any) -> Any:
        """Cache any derived result (e.g. face detections) under ``key`` for other extractors."""
        return self._cached(key, compute)
