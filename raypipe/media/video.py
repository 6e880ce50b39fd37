"""Decoding frames sampled by timestamp, resized at decode, streamed in windows.

Frames are chosen by presentation time (the frame shown at 0, 1/fps, 2/fps... seconds), so
variable-frame-rate videos are sampled evenly in time. They come out in windows of at most
``window_frames`` frames, so memory is bounded by one window, however long the video is.

decord decodes first (fast random access into its own packet index); where decord cannot open or
decode a file, or the stream carries a rotation (decord's rotation handling breaks when it also
resizes), PyAV decodes it sequentially instead. Both resize at decode and return upright RGB.
Still images are one window holding one frame at time 0.

These functions run natively-compiled decoders; :mod:`raypipe.media.decoder_process` calls them
inside a child process so a hang or crash costs one file, never the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from raypipe.errors import MediaError
from raypipe.media.probe import MediaInfo

log = logging.getLogger(__name__)

#: Timestamps closer than this (seconds) count as equal: decoders report times with float32
#: rounding (about 2 microseconds at 30 s), far below any frame period.
_TIME_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class SampledFrames:
    """Frames sampled from one video (one window of them, or all).

    Attributes:
        frames: (N, H, W, 3) uint8 RGB, upright, already resized.
        timestamps_s: (N,) presentation time of each frame, seconds from the start.
        source_indices: (N,) index of each frame in the decoded stream (presentation order).
    """

    frames: np.ndarray
    timestamps_s: np.ndarray
    source_indices: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @staticmethod
    def concatenate(parts: list[SampledFrames], height: int, width: int) -> SampledFrames:
        """Join windows into one; an empty list gives zero frames of ``height`` x ``width``."""
        if not parts:
            return SampledFrames(
                np.zeros((0, height, width, 3), np.uint8),
                np.zeros(0, np.float32),
                np.zeros(0, np.int64),
            )
        return SampledFrames(
            np.concatenate([p.frames for p in parts]),
            np.concatenate([p.timestamps_s for p in parts]),
            np.concatenate([p.source_indices for p in parts]),
        )


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


def sample_times(start_s: float, end_s: float, fps: float, max_frames: int | None) -> np.ndarray:
    """Target times (seconds) start, start + 1/fps, ... up to ``end_s``, evenly thinned to at
    most ``max_frames`` (None: no limit)."""
    count = int(np.floor(max(end_s - start_s, 0.0) * fps + _TIME_TOLERANCE_S)) + 1
    targets = start_s + np.arange(count) / fps
    if max_frames is not None and len(targets) > max_frames:
        keep = np.linspace(0, len(targets) - 1, max_frames).round().astype(int)
        targets = targets[keep]
    return targets


def sample_indices(frame_times_s: np.ndarray, fps: float, max_frames: int | None) -> np.ndarray:
    """Indices of the frames shown at times 0, 1/fps, 2/fps, ... (by timestamp, VFR-safe).

    ``frame_times_s`` are the start times of the decoded frames in seconds, ascending.
    For each target time the last frame starting at or before it is chosen; repeats are dropped.
    """
    if len(frame_times_s) == 0:
        return np.zeros(0, dtype=np.int64)
    start = float(frame_times_s[0])
    end = float(frame_times_s[-1])
    targets = sample_times(start, end, fps, None)
    picks = np.searchsorted(frame_times_s, targets + _TIME_TOLERANCE_S, side="right") - 1
    picks = np.unique(np.clip(picks, 0, len(frame_times_s) - 1))
    if max_frames is not None and len(picks) > max_frames:
        keep = np.linspace(0, len(picks) - 1, max_frames).round().astype(int)
        picks = picks[keep]
    return picks


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _undecodable(path: str, reason: str) -> MediaError:
    return MediaError(
        f"{path}: video cannot be decoded ({reason}); the file may be truncated or corrupt; "
        "re-encode it."
    )


def _decord_windows(
    info: MediaInfo, fps: float, size: tuple[int, int], max_frames: int | None, window: int
) -> Iterator[SampledFrames]:
    import decord

    width, height = size
    reader = decord.VideoReader(
        info.path, ctx=decord.cpu(0), width=width, height=height, num_threads=1
    )
    count = len(reader)
    if count == 0:
        raise MediaError(f"{info.path}: video stream holds no decodable frames; re-encode it.")
    times = np.asarray(reader.get_frame_timestamp(np.arange(count)))[:, 0]
    picks = sample_indices(times, fps, max_frames)
    for start in range(0, len(picks), window):
        chunk = picks[start : start + window]
        frames = reader.get_batch(chunk).asnumpy()
        if start + window < len(picks):
            # decord's reader goes on decoding ahead in the background while this window is
            # handed over and processed, and keeps what it decoded: on a long video that is
            # most of the video in memory. Seeking back drops it; the next window seeks to its
            # first frame again (decoding from the keyframe before it).
            reader.seek(0)
        if frames.shape[1:] != (height, width, 3):
            raise RuntimeError(f"decord returned frames of shape {frames.shape[1:]}")
        yield SampledFrames(frames, times[chunk].astype(np.float32), chunk.astype(np.int64))


def _pyav_windows(
    info: MediaInfo,
    fps: float,
    size: tuple[int, int],
    max_frames: int | None,
    window: int,
    after_s: float = -1.0,
) -> Iterator[SampledFrames]:
    """Sequential PyAV decode; frames at or before ``after_s`` seconds are not returned."""
    import av

    from raypipe.media.probe import open_container

    width, height = size
    k = info.rotation // 90
    # Resize in the coded orientation, rotate afterwards.
    coded = (height, width) if k % 2 else (width, height)
    with open_container(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        # Targets run to the last frame's start, as decord's sample_indices does; the duration
        # ends one frame period (or a longer audio track) later, where no frame starts.
        end = info.last_frame_s if info.last_frame_s >= start else start + max(info.duration_s, 0.0)
        targets = sample_times(start, end, fps, max_frames)
        buffer: list[np.ndarray] = []
        stamps: list[float] = []
        indices: list[int] = []
        target = 0
        previous = None  # (frame, time, index) of the last decoded frame
        index = -1

        def take(item: tuple) -> None:
            frame, time_s, idx = item
            if indices and indices[-1] == idx:
                return
            if time_s <= after_s:
                return
            image = frame.reformat(width=coded[0], height=coded[1], format="rgb24").to_ndarray()
            buffer.append(np.ascontiguousarray(np.rot90(image, k)) if k else image)
            stamps.append(time_s)
            indices.append(idx)

        try:
            for frame in container.decode(stream):
                index += 1
                time_s = (
                    float(frame.time) if frame.time is not None else index / max(info.fps, 1e-6)
                )
                current = (frame, time_s, index)
                while target < len(targets) and targets[target] + _TIME_TOLERANCE_S < time_s:
                    take(previous or current)
                    target += 1
                previous = current
                if len(buffer) >= window:
                    yield SampledFrames(
                        np.stack(buffer), np.asarray(stamps, np.float32), np.asarray(indices)
                    )
                    buffer, stamps, indices = [], [], []
                if target >= len(targets):
                    break
        except av.error.FFmpegError as exc:
            if index < 0:
                raise _undecodable(info.path, _first_line(exc)) from None
            log.warning("%s: decoding stopped at frame %d (%s)", info.path, index, exc)
        if index < 0:
            raise MediaError(f"{info.path}: video stream holds no decodable frames; re-encode it.")
        if (
            target < len(targets)
            and previous is not None
            and targets[target] <= previous[1] + _TIME_TOLERANCE_S
        ):
            take(previous)  # the last frame starts exactly at the remaining target
        if buffer:
            yield SampledFrames(
                np.stack(buffer), np.asarray(stamps, np.float32), np.asarray(indices)
            )


def iter_windows(
    info: MediaInfo,
    fps: float,
    max_side: int,
    max_frames: int | None = None,
    window_frames: int = 64,
) -> Iterator[SampledFrames]:
    """Frames of ``info.path`` sampled at ``fps`` Hz by timestamp, in windows.

    Args:
        info: the probe of the file.
        fps: sampling rate, Hz.
        max_side: longest side of the returned frames, pixels (resized at decode).
        max_frames: at most this many frames in all (evenly thinned beyond); None: no limit.
        window_frames: frames per window (the last may hold fewer).

    Raises:
        MediaError: there is no video stream or nothing can be decoded.
    """
    if not info.has_video:
        raise MediaError(
            f"{info.path}: has no video stream; visual extractors need a video or image file."
        )
    if info.width <= 0 or info.height <= 0:
        raise MediaError(f"{info.path}: video stream has no frame size; re-encode it.")
    size = decode_size(info.width, info.height, max_side)
    if info.is_image:
        from raypipe.media.image import load_image

        frame = load_image(info.path, *size)
        yield SampledFrames(frame[None], np.zeros(1, np.float32), np.zeros(1, np.int64))
        return
    if info.frame_count == 0:
        raise MediaError(f"{info.path}: video stream holds no frames; re-encode it.")
    done_until = -1.0
    if info.rotation == 0:
        try:
            for part in _decord_windows(info, fps, size, max_frames, window_frames):
                done_until = float(part.timestamps_s[-1])
                yield part
            return
        except MediaError:
            raise
        except Exception as exc:  # decord raises several types; PyAV gets a second chance
            log.info("%s: decord failed (%s); decoding with PyAV", info.path, _first_line(exc))
    try:
        yield from _pyav_windows(info, fps, size, max_frames, window_frames, after_s=done_until)
    except MediaError:
        raise
    except Exception as exc:
        raise _undecodable(info.path, _first_line(exc)) from None


def decode_frames(
    info: MediaInfo, fps: float, max_side: int, max_frames: int | None = None
) -> SampledFrames:
    """All sampled frames at once (see :func:`iter_windows`); for short media and tests."""
    size = decode_size(info.width, info.height, max_side) if info.has_video else (2, 2)
    parts = list(iter_windows(info, fps, max_side, max_frames))
    return SampledFrames.concatenate(parts, size[1], size[0])
