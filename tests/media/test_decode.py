"""Probing and decoding real corpora's troubles, with media these tests make: VFR, rotation,
truncation, zero frames, no video, images with alpha or grey, a 10-minute clip, and a decoder
that hangs or crashes inside its child process."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from raypipe.errors import MediaError
from raypipe.media.context import MediaContext
from raypipe.media.decoder_process import FAULT_ENV, DecoderProcess
from raypipe.media.probe import fps_mode, probe
from raypipe.media.video import decode_frames, iter_windows, sample_indices
from raypipe.media.writer import write_clip


def _pattern(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose red channel encodes the frame number (t * 8) and a white top-left block."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (t * 8) % 256
        frames[t, : height // 4, : width // 4] = 255
    return frames


def _encode(
    path: Path,
    frames: np.ndarray,
    pts: list[int],
    time_base: Fraction,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Write frames with explicit presentation times (units of ``time_base``)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.options = {"bf": "0", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for frame_array, stamp in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(frame_array, format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def decoder() -> DecoderProcess:
    process = DecoderProcess(timeout_s=60)
    yield process
    process.close()


def test_constant_rate_clip_probe_and_sample(tmp_path: Path, decoder: DecoderProcess) -> None:
    path = tmp_path / "cfr.mp4"
    write_clip(path, _pattern(20), fps=10)
    info = decoder.probe(path)
    assert (info.frame_count, info.fps_mode, info.rotation) == (20, "constant", 0)
    assert (info.width, info.height) == (64, 48) and info.has_video and not info.has_audio
    assert info.duration_s == pytest.approx(2.0, abs=0.01)
    sampled = decode_frames(info, fps=5, max_side=32)
    assert sampled.frames.shape == (10, 24, 32, 3)
    np.testing.assert_allclose(sampled.timestamps_s, np.arange(10) * 0.2, atol=1e-3)
    np.testing.assert_array_equal(sampled.source_indices, np.arange(0, 20, 2))


def test_variable_frame_rate_is_sampled_by_time(tmp_path: Path) -> None:
    # 10 frames in the first second, then 2 frames per second for 4 seconds (pts in ms).
    pts = [i * 100 for i in range(10)] + [1000 + i * 500 for i in range(8)]
    path = _encode(tmp_path / "vfr.mp4", _pattern(len(pts)), pts, Fraction(1, 1000))
    info = probe(path)
    assert info.fps_mode == "variable" and info.frame_count == len(pts)
    sampled = decode_frames(info, fps=2, max_side=64)
    # Targets every 0.5 s: the frame shown at each time, not every n-th frame.
    np.testing.assert_allclose(sampled.timestamps_s, np.arange(0, 4.6, 0.5), atol=1e-3)
    red = sampled.frames[:, -1, -1, 0].astype(int)
    expected = [(i * 8) for i in (0, 5)] + [(10 + k) * 8 for k in range(8)]
    assert np.abs(red - np.array(expected)).max() <= 3


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path: Path, rotation: int) -> None:
    frames = _pattern(6)
    path = _encode(
        tmp_path / f"rot{rotation}.mp4", frames, list(range(6)), Fraction(1, 10), rotation
    )
    info = probe(path)
    assert info.rotation == rotation and (info.coded_width, info.coded_height) == (64, 48)
    upright = np.rot90(frames[0], rotation // 90)
    assert (info.height, info.width) == upright.shape[:2]
    got = decode_frames(info, fps=10, max_side=64).frames[0]
    assert got.shape == upright.shape
    white = (got.min(axis=2) > 200).astype(float)
    expected = (upright.min(axis=2) > 200).astype(float)
    assert np.abs(white - expected).mean() < 0.05  # the white block sits where it should


def test_huge_resolution_is_downscaled_at_decode(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    write_clip(path, _pattern(3, height=1080, width=1920), fps=3)
    info = probe(path)
    windows = list(iter_windows(info, fps=3, max_side=128, window_frames=2))
    assert [w.frames.shape for w in windows] == [(2, 72, 128, 3), (1, 72, 128, 3)]


def test_long_clip_streams_in_bounded_windows(tmp_path: Path) -> None:
    """A 10-minute clip at 2 fps (64x48): 600 frames come back in windows of at most 32."""
    path = tmp_path / "long.mp4"
    write_clip(path, _pattern(1200), fps=2)
    media = MediaContext("long", path, fps=1, max_side=64, max_frames=None, window_frames=32)
    assert media.info.duration_s == pytest.approx(600, abs=1)
    sizes, last = [], -1.0
    for window in media.windows():
        sizes.append(len(window))
        assert window.timestamps_s[0] > last
        last = float(window.timestamps_s[-1])
    assert sum(sizes) == 600 and max(sizes) == 32
    assert last == pytest.approx(599, abs=0.01)


def test_header_that_over_reports_frames(tmp_path: Path) -> None:
    """A faststart file cut short keeps a header promising 40 frames; packets tell the truth."""
    path = _encode(
        tmp_path / "cut.mp4", _pattern(40), list(range(40)), Fraction(1, 10), faststart=True
    )
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    info = probe(path)
    assert info.header_frames == 40 and 0 < info.frame_count < 40
    sampled = decode_frames(info, fps=10, max_side=64)
    assert 0 < len(sampled) < 40


def test_truncated_and_empty_and_non_media_fail_clearly(tmp_path: Path, decoder) -> None:
    good = tmp_path / "good.mp4"
    write_clip(good, _pattern(10), fps=10)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:300])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    for path, reason in [
        (truncated, "not a readable media container"),
        (empty, r"empty \(0 bytes\)"),
        (text, "not a readable media container"),
        (tmp_path / "absent.mp4", "does not exist"),
    ]:
        with pytest.raises(MediaError, match=reason) as caught:
            decoder.probe(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_zero_frames_and_no_video_stream(tmp_path: Path, decoder) -> None:
    zero = tmp_path / "zero.avi"  # a video stream in the header, not one packet after it
    with av.open(str(zero), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    audio_only = tmp_path / "voice.m4a"
    with av.open(str(audio_only), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(samples[:, :1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    assert probe(zero).has_video and probe(zero).frame_count == 0
    for path, reason in [(zero, "holds no frames"), (audio_only, "has no video stream")]:
        media = MediaContext(path.stem, path, decoder=decoder)
        with pytest.raises(MediaError, match=reason):
            list(media.windows())


def test_images_grey_and_alpha_are_one_frame_rgb(tmp_path: Path, decoder) -> None:
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[:, 40:, 3] = 255  # left half transparent, right half opaque green
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(np.full((30, 40), 90, np.uint8), "L").save(tmp_path / "grey.jpg")
    alpha = MediaContext("alpha", tmp_path / "alpha.png", max_side=40, decoder=decoder)
    assert alpha.info.is_image and alpha.info.frame_count == 1
    frames = alpha.frames
    assert frames.frames.shape == (1, 30, 40, 3) and frames.timestamps_s.tolist() == [0.0]
    assert frames.frames[0, :, :18].max() <= 2  # transparent over black (resampling ripple)
    assert abs(int(frames.frames[0, 15, 30, 1]) - 200) <= 2
    grey = MediaContext("grey", tmp_path / "grey.jpg", decoder=decoder).frames.frames[0]
    assert grey.shape == (30, 40, 3) and np.ptp(grey.astype(int), axis=2).max() <= 1
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(MediaError, match="not a readable image"):
        decoder.probe(tmp_path / "broken.png")


@pytest.mark.parametrize("max_frames", [None, 3])
def test_pyav_takes_over_when_decord_cannot(tmp_path: Path, monkeypatch, max_frames) -> None:
    """Same frames from both decoders, also when the frame cap thins the time grid."""
    import decord

    path = tmp_path / "clip.mp4"
    write_clip(path, _pattern(10), fps=10)
    info = probe(path)
    reference = decode_frames(info, fps=5, max_side=64, max_frames=max_frames)

    def refuse(*args, **kwargs):
        raise decord.DECORDError("cannot open")

    monkeypatch.setattr(decord, "VideoReader", refuse)
    fallback = decode_frames(info, fps=5, max_side=64, max_frames=max_frames)
    np.testing.assert_array_equal(fallback.source_indices, reference.source_indices)
    assert np.abs(fallback.frames.astype(int) - reference.frames.astype(int)).mean() < 2


def test_pyav_takes_over_where_decord_fails_partway(tmp_path: Path, monkeypatch) -> None:
    """decord decodes the first window, then fails: PyAV goes on from the next frame, and the
    windows together are the frames of a clean decode, none twice, none missing."""
    import decord

    path = tmp_path / "clip.mp4"
    write_clip(path, _pattern(24), fps=10)
    info = probe(path)
    reference = decode_frames(info, fps=5, max_side=64)
    opened = decord.VideoReader

    class FailsOnSecondWindow:
        def __init__(self, *args, **kwargs) -> None:
            self.reader = opened(*args, **kwargs)
            self.batches = 0

        def __getattr__(self, name: str):
            return getattr(self.reader, name)

        def __len__(self) -> int:
            return len(self.reader)

        def get_batch(self, indices):
            self.batches += 1
            if self.batches == 2:
                raise decord.DECORDError("corrupt packet")
            return self.reader.get_batch(indices)

    monkeypatch.setattr(decord, "VideoReader", FailsOnSecondWindow)
    windows = list(iter_windows(info, fps=5, max_side=64, window_frames=4))
    assert len(windows[0]) == 4  # the first window came from decord
    times = np.concatenate([w.timestamps_s for w in windows])
    np.testing.assert_allclose(times, reference.timestamps_s, atol=1e-3)
    frames = np.concatenate([w.frames for w in windows])
    assert frames.shape == reference.frames.shape
    assert np.abs(frames.astype(int) - reference.frames.astype(int)).mean() < 2


@pytest.mark.parametrize("fault", ["hang", "crash"])
def test_hang_or_crash_costs_one_file(tmp_path: Path, monkeypatch, fault: str) -> None:
    good = tmp_path / "good.mp4"
    write_clip(good, _pattern(10), fps=10)
    bad = tmp_path / f"fault-{fault}.mp4"
    write_clip(bad, _pattern(10), fps=10)
    monkeypatch.setenv(FAULT_ENV, f"{fault}:fault-{fault}")
    # A fresh child's first answer includes starting Python (slow on a loaded machine): the
    # timeout is short only while the warm child is waited on for the bad file.
    process = DecoderProcess(timeout_s=120)
    try:
        process.probe(good)
        first = process.pid
        message = "hung" if fault == "hang" else "crashed on this file \\(signal SIGSEGV\\)"
        process.timeout_s = 3
        with pytest.raises(MediaError, match=message) as caught:
            process.probe(bad)
        process.timeout_s = 120
        assert str(bad) in str(caught.value)
        assert process.pid is None  # the child was stopped or died; the parent goes on
        info = process.probe(good)  # a fresh child serves the next file
        assert info.frame_count == 10 and process.pid not in (None, first)
        assert process.starts == 2
        assert len(list(process.windows(info, 5, 64, None, 4))) == 2
    finally:
        process.close()


@pytest.mark.parametrize("fault", ["hang", "crash"])
def test_hang_or_crash_between_windows_costs_one_file(
    tmp_path: Path, monkeypatch, fault: str
) -> None:
    """The child sends a first window, then hangs or dies: the window that came is kept by
    the caller, the rest of the decode fails with the reason, and a fresh child goes on."""
    good = tmp_path / "good.mp4"
    write_clip(good, _pattern(10), fps=10)
    bad = tmp_path / f"midstream-{fault}.mp4"
    write_clip(bad, _pattern(10), fps=10)
    monkeypatch.setenv(FAULT_ENV, f"{fault}@1:midstream-{fault}")
    # Short timeout only while the warm child is waited on for the second window (a fresh
    # child's first answer includes starting Python, slow on a loaded machine).
    process = DecoderProcess(timeout_s=120)
    try:
        stream = process.windows(process.probe(bad), 10, 64, None, 4)
        first = next(stream)
        assert first.source_indices.tolist() == [0, 1, 2, 3]
        child = process.pid
        message = "hung" if fault == "hang" else "crashed on this file \\(signal SIGSEGV\\)"
        process.timeout_s = 3
        with pytest.raises(MediaError, match=message) as caught:
            next(stream)
        process.timeout_s = 120
        assert str(bad) in str(caught.value)
        assert process.pid is None
        info = process.probe(good)
        windows = list(process.windows(info, 10, 64, None, 4))
        assert [len(w.source_indices) for w in windows] == [4, 4, 2]
        assert process.pid not in (None, child) and process.starts == 2
    finally:
        process.close()


def test_abandoned_decode_does_not_desynchronise(tmp_path: Path, decoder) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path, _pattern(30), fps=10)
    info = decoder.probe(path)
    stream = decoder.windows(info, 10, 64, None, 4)
    next(stream)
    stream.close()  # stop after one window: the next request must still get its own answer
    assert decoder.probe(path).frame_count == 30


def test_fps_mode_and_sample_indices_units() -> None:
    assert fps_mode(np.arange(10) / 25) == "constant"
    assert fps_mode(np.array([0, 0.04, 0.08, 0.5, 0.54])) == "variable"
    assert fps_mode(np.zeros(0)) == "none"
    times = np.array([0.0, 0.1, 0.2, 0.9, 1.0])
    assert sample_indices(times, 2, None).tolist() == [0, 2, 4]
    # Decoders report float32 times: 10 minutes at 5 fps must still give every frame once.
    rounded = (np.arange(3000) / 5).astype(np.float32).astype(np.float64)
    assert len(sample_indices(rounded, 5, None)) == 3000


_ORPHAN_PARENT = """
import sys, time
from raypipe.media.decoder_process import DecoderProcess
process = DecoderProcess(timeout_s=600)
process._request(("probe", sys.argv[1]))  # the child hangs on this file
print(process.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_parent_leaves_no_decoder_child(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "fault-hang.mp4"
    write_clip(path, _pattern(5), fps=10)
    env = {**os.environ, FAULT_ENV: "hang:fault-hang"}
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_PARENT, str(path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)  # as when Ray kills an actor
    parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{child}/stat") as stat:  # reaped by init once it exits
                if stat.read().split()[2] == "Z":
                    break
        except FileNotFoundError:  # reaped between the signal and the read
            break
        time.sleep(0.2)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the decoder child outlived its killed parent by 30 s")
