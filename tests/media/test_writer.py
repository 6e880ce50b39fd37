"""write_clip: real encodes, decoded back with PyAV and decord."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import decord
import numpy as np
import pytest

from raypipe.errors import MediaError
from raypipe.media.writer import video_codec, write_clip

SAMPLE_RATE = 16000


def _frames(n: int = 25, height: int = 96, width: int = 128) -> np.ndarray:
    """Smooth moving colour gradients (compress well, so decoded pixels stay close)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (x * 255 / width + 4 * t) % 256
        frames[t, ..., 1] = y * 255 / height
        frames[t, ..., 2] = 128 + 60 * np.sin((x + y + 3 * t) / 15)
    return frames


def _tone(duration_s: float, frequency_hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def _decode_pyav(path: Path) -> tuple[np.ndarray, np.ndarray | None, dict]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "codec": video.codec_context.name,
            "fps": float(video.average_rate),
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "audio_streams": len(container.streams.audio),
        }
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    audio = None
    if info["audio_streams"]:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            info["sample_rate"] = stream.rate
            info["audio_codec"] = stream.codec_context.name
            audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, audio, info


def test_clip_decodes_with_pyav(tmp_path: Path) -> None:
    frames, tone = _frames(), _tone(2.5)
    path = tmp_path / "clip.mp4"
    write_clip(path, frames, 10.0, tone, SAMPLE_RATE)
    decoded, audio, info = _decode_pyav(path)
    assert abs(len(decoded) - len(frames)) <= 1
    assert decoded.shape[1:] == frames.shape[1:]
    assert info["fps"] == pytest.approx(10.0)
    assert info["codec"] == ("h264" if video_codec() == "libx264" else "mpeg4")
    assert np.abs(decoded.astype(int) - frames[: len(decoded)].astype(int)).mean() < 6
    assert info["audio_codec"] == "aac"
    assert info["sample_rate"] == SAMPLE_RATE
    assert audio is not None
    assert len(audio) / SAMPLE_RATE == pytest.approx(2.5, abs=0.1)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * SAMPLE_RATE / len(audio) == pytest.approx(440.0, abs=5.0)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.1)


def test_clip_decodes_with_decord(tmp_path: Path) -> None:
    frames, tone = _frames(), _tone(2.5)
    path = tmp_path / "clip.mp4"
    write_clip(path, frames, 10.0, tone, SAMPLE_RATE)
    reader = decord.VideoReader(str(path))
    assert abs(len(reader) - len(frames)) <= 1
    assert reader.get_avg_fps() == pytest.approx(10.0)
    batch = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert batch.shape[1:] == frames.shape[1:]
    assert np.abs(batch.astype(int) - frames[: len(batch)].astype(int)).mean() < 6
    audio = decord.AudioReader(str(path), sample_rate=SAMPLE_RATE, mono=True)
    assert audio.shape[0] == 1
    assert audio.shape[1] / SAMPLE_RATE == pytest.approx(2.5, abs=0.1)


def test_mpeg4_fallback_codec_decodes_with_both(tmp_path: Path) -> None:
    frames = _frames(12, 64, 80)
    path = tmp_path / "mpeg4.mp4"
    write_clip(path, frames, 12.0, _tone(1.0), SAMPLE_RATE, codec="mpeg4")
    decoded, audio, info = _decode_pyav(path)
    assert info["codec"] == "mpeg4"
    assert abs(len(decoded) - 12) <= 1
    assert audio is not None and len(audio) / SAMPLE_RATE == pytest.approx(1.0, abs=0.1)
    reader = decord.VideoReader(str(path))
    assert abs(len(reader) - 12) <= 1
    assert reader[0].asnumpy().shape == (64, 80, 3)


def test_video_only_and_fractional_fps(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    write_clip(path, _frames(30, 48, 64), 30000 / 1001)
    decoded, audio, info = _decode_pyav(path)
    assert audio is None and info["audio_streams"] == 0
    assert info["fps"] == pytest.approx(29.97, abs=0.01)
    assert abs(len(decoded) - 30) <= 1
    assert decord.VideoReader(str(path)).get_avg_fps() == pytest.approx(29.97, abs=0.01)


def test_writes_atomically_and_deterministically(tmp_path: Path) -> None:
    frames, tone = _frames(10), _tone(1.0)
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    write_clip(first, frames, 10.0, tone)
    write_clip(second, frames, 10.0, tone)
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    write_clip(first, frames[:4], 10.0)  # replaces the existing file
    assert abs(len(decord.VideoReader(str(first))) - 4) <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no temp left
    nested = tmp_path / "new" / "folder" / "c.mp4"
    write_clip(nested, frames, 10.0)
    assert nested.is_file()


def test_unwritable_target_raises_media_error_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be\n")
    with pytest.raises(MediaError, match="not_a_folder"):
        write_clip(blocker / "clip.mp4", _frames(4), 10.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 63, 64, 3), np.uint8), "even"),
        (np.zeros((4, 64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64, 3), np.uint8), r"\(T, H, W, 3\)"),
        (np.zeros((0, 64, 64, 3), np.uint8), "at least one"),
    ],
)
def test_rejects_bad_frames(tmp_path: Path, frames: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_clip(tmp_path / "bad.mp4", frames, 10.0)
    assert not list(tmp_path.iterdir())


def test_rejects_bad_audio_and_rate(tmp_path: Path) -> None:
    frames = _frames(4, 32, 32)
    with pytest.raises(ValueError, match="mono"):
        write_clip(tmp_path / "x.mp4", frames, 10.0, np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="fps"):
        write_clip(tmp_path / "x.mp4", frames, 0.0)
    with pytest.raises(ValueError, match="codec"):
        write_clip(tmp_path / "x.mp4", frames, 10.0, codec="vp9")
