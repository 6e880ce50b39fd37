"""Decode coverage on real truncated files: a file cut short is reported with the fraction of its
declared duration that decoded, and a note naming it, instead of a silent ``ok``.

What truncation does, found with these clips (PyAV's FFmpeg, H.264 + AAC, 6 s at 10 fps):
- :func:`~raypipe.media.writer.write_clip` writes the ``moov`` index at the end of the .mp4
  (FFmpeg's default). Cut to half its bytes, the index is gone and FFmpeg refuses to open the
  file ("invalid data"): it already fails with a reason, and coverage has nothing to add.
- The same streams remuxed with ``movflags=faststart`` (index first, as web downloads are) and
  cut to half still open: the header declares 6.0 s, demuxing stops at the cut (30 of 60 video
  packets, the last one torn), decord gives up, PyAV decodes frames up to 2.8 s and the AAC
  track 2.94 s, all without an error. This is the case tested here; without coverage its rows
  were ``ok`` with no note. Measured: video 2.9 s of 6.0 s (0.483), estimated from the frames
  sampled at 5 Hz as 2.8 s + 0.2 s (0.500); audio 2.944 s of 6.0 s (0.491), also in the rows.
  Matroska (.mkv, duration in the header) cut in half behaves alike (6.06 s declared, about
  3 s decoded).
- MPEG-TS has no duration header: FFmpeg estimates it from the bytes present, so a cut .ts
  declares about 3 s and coverage cannot see the cut (and its AAC track fails on the torn last
  packet, which is a ``failed`` row already).

The reference decoded fraction is measured independently here, with PyAV on the cut file: the
end of the last decodable video frame (its time plus one frame period) and the count of decoded
audio samples, each over the stream's declared duration.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from raypipe.errors import MediaError
from raypipe.extractors.process import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.media.context import MediaContext
from raypipe.media.coverage import Coverage, apply_coverage
from raypipe.media.probe import probe
from raypipe.media.writer import write_clip
from raypipe.store.feature_store import FeatureStore

FPS = 10  # frame rate of the written clip, Hz
SECONDS = 6.0
SAMPLE_FPS = 5.0  # video.fps, Hz
SAMPLE_RATE = 16_000

#: Video coverage is estimated from the sampled frames: the last sampled frame lies at most one
#: sampling interval before the last decodable frame, so the estimate is within one sampling
#: interval (0.2 s of 6 s: 0.033) of the measured fraction.
VIDEO_TOLERANCE = (1.0 / SAMPLE_FPS) / SECONDS + 1e-3
#: The store's audio track is the same AAC frames resampled to 16 kHz mono; the resampler may
#: hold back part of one AAC frame (1024 samples, 64 ms at 16 kHz): 0.011 of 6 s.
AUDIO_TOLERANCE = 1024 / SAMPLE_RATE / SECONDS


def _remux(source: Path, target: Path, fmt: str, options: dict[str, str]) -> Path:
    """Copy the streams of ``source`` into a new container, without re-encoding."""
    with av.open(str(source)) as src, av.open(str(target), "w", format=fmt, options=options) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:  # the flush packet at the end of each stream
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return target


def _cut(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 6 s clip (noise frames, so bytes grow evenly with time, and a 220 Hz tone) written by
    write_clip, its faststart remux, and the halves of both."""
    folder = tmp_path_factory.mktemp("coverage")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (int(SECONDS * FPS), 96, 96, 3), dtype=np.uint8)
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    written = folder / "written.mp4"
    write_clip(written, frames, FPS, tone, SAMPLE_RATE)
    full = _remux(written, folder / "full.mp4", "mp4", {"movflags": "faststart"})
    return {
        "written": written,
        "written_half": _cut(written, folder / "written_half.mp4"),
        "full": full,
        "half": _cut(full, folder / "half.mp4"),
    }


def _decoded(path: Path, kind: str) -> tuple[av.stream.Stream, list[av.frame.Frame]]:
    """The stream of ``kind`` and the frames PyAV decodes from it up to the cut."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        frames = []
        try:
            for frame in container.decode(stream):
                frames.append(frame)
        except av.error.FFmpegError:
            pass  # the torn tail: what decoded before it counts
        return stream, frames


def _measured(path: Path) -> tuple[float, float]:
    """(video, audio) fraction of the declared durations that PyAV decodes from ``path``."""
    video, frames = _decoded(path, "video")
    end = float(frames[-1].time) + 1.0 / float(video.average_rate)
    video_fraction = end / float(video.duration * video.time_base)
    audio, chunks = _decoded(path, "audio")
    seconds = sum(c.samples for c in chunks) / audio.codec_context.sample_rate
    audio_fraction = seconds / float(audio.duration * audio.time_base)
    return min(video_fraction, 1.0), min(audio_fraction, 1.0)


def _rows(path: Path, store_dir: Path, **video) -> dict[str, dict]:
    """Media rows of face_hog, face_expression and opensmile on ``path``, as stored."""
    extractors = [
        build_extractor("face_hog"),
        build_extractor("face_expression"),
        build_extractor("opensmile"),
    ]
    store = FeatureStore(str(store_dir))
    store.initialise()
    media = MediaContext(path.stem, path, fps=SAMPLE_FPS, **video)
    process_media(media, extractors, store)
    return {e.name: store.media_table(e.name, e.version).iloc[0].to_dict() for e in extractors}


def test_the_default_mp4_cut_in_half_does_not_open(clips: dict[str, Path]) -> None:
    probe(clips["written"])
    with pytest.raises(MediaError, match="truncated"):
        probe(clips["written_half"])


def test_a_full_clip_covers_its_duration_without_a_note(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    rows = _rows(clips["full"], tmp_path / "store")
    for name, row in rows.items():
        assert row["status"] == "ok", name
        assert row["coverage"] == pytest.approx(1.0, abs=VIDEO_TOLERANCE), name
        assert pd.isna(row["error"]), name


def test_a_truncated_clip_is_ok_with_its_coverage_and_a_note(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    half = clips["half"]
    assert probe(half).duration_s == pytest.approx(SECONDS)  # the header still declares 6 s
    video, audio = _measured(half)
    assert 0.35 < video < 0.65 and 0.35 < audio < 0.65  # the cut left about half
    rows = _rows(half, tmp_path / "store")
    for name in ("face_hog", "face_expression"):
        row = rows[name]
        assert row["status"] == "ok"
        assert row["coverage"] == pytest.approx(video, abs=VIDEO_TOLERANCE), name
        assert str(half) in row["error"] and "video decoded" in row["error"]
        assert "may be truncated" in row["error"]
    row = rows["opensmile"]
    assert row["status"] == "ok"
    assert row["coverage"] == pytest.approx(audio, abs=AUDIO_TOLERANCE)
    assert str(half) in row["error"] and "audio decoded" in row["error"]
    assert f"({round(row['coverage'] * 100)} %)" in row["error"]


def test_a_frame_cap_thins_frames_and_keeps_coverage(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """video.max_frames thins the sampled frames over the whole stream (it does not stop the
    decode early), so a capped full clip still covers its duration and a capped cut one still
    shows its cut."""
    hog = build_extractor("face_hog")
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    for name in ("full", "half"):
        media = MediaContext(name, clips[name], fps=SAMPLE_FPS, max_frames=4)
        process_media(media, [hog], store)
    rows = store.media_table(hog.name, hog.version).set_index("media_id")
    assert rows.loc["full", "frames"] == 4 and rows.loc["half", "frames"] == 4
    assert rows.loc["full", "coverage"] == pytest.approx(1.0, abs=VIDEO_TOLERANCE)
    assert pd.isna(rows.loc["full", "error"])
    video, _ = _measured(clips["half"])
    assert rows.loc["half", "coverage"] == pytest.approx(video, abs=VIDEO_TOLERANCE)
    assert "may be truncated" in rows.loc["half", "error"]


def test_the_threshold_is_a_setting_and_images_have_no_coverage(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    from PIL import Image

    image = tmp_path / "still.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    hog = build_extractor("face_hog")
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    lenient = MediaContext("half", clips["half"], fps=SAMPLE_FPS, min_coverage=0.3)
    process_media(lenient, [hog], store)
    process_media(MediaContext("still", image), [hog], store)
    rows = store.media_table(hog.name, hog.version).set_index("media_id")
    assert 0.35 < rows.loc["half", "coverage"] < 0.65
    assert pd.isna(rows.loc["half", "error"])  # above the lenient threshold: no note
    assert rows.loc["still", "status"] == "ok"
    assert pd.isna(rows.loc["still", "coverage"])
    assert pd.isna(rows.loc["still", "error"])


def test_the_note_joins_an_existing_note() -> None:
    row = {"status": "ok", "error": "no speech"}
    apply_coverage(row, Coverage("audio", 3.0, 6.0), "/data/a.mp4", 0.9)
    assert row["coverage"] == 0.5
    assert row["error"] == (
        "no speech; /data/a.mp4: audio decoded 3.0 s of 6.0 s declared (50 %); the file may be "
        "truncated: re-encode or re-download it"
    )
    failed = {"status": "failed", "error": "x"}
    apply_coverage(failed, Coverage("audio", 3.0, 6.0), "/data/a.mp4", 0.9)
    assert failed["error"] == "x"
