"""Silero voice activity: speech segments with start/end seconds; silence has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raypipe.extractors.audio.vad import VadExtractor, VoiceActivity, speech_segments
from raypipe.media.audio import load_audio
from raypipe.media.context import MediaContext
from raypipe.media.speech import speak
from tests.audio.conftest import LEAD_S, needs_espeak, write_wav


@needs_espeak
def test_segments_cover_the_spoken_part(speech_wavs) -> None:
    path, text = speech_wavs[0]
    speech, _ = speak(text, pitch=50, words_per_minute=150)
    speech_end = LEAD_S + len(speech) / 16000
    result = VadExtractor().extract(MediaContext("s", path))
    rows = result.frame_rows.to_pandas()
    assert len(rows) >= 1 and set(rows["kind"]) == {"speech"}
    assert abs(rows["timestamp_s"].min() - LEAD_S) < 0.3
    assert rows["end_s"].max() <= speech_end + 0.3
    assert rows["end_s"].max() > speech_end - 0.6
    speech_s, fraction, count = result.media_row["features"]
    assert count == len(rows) and 0 < fraction < 1
    assert abs(speech_s - (rows["end_s"] - rows["timestamp_s"]).sum()) < 1e-3


def test_silence_and_noise_have_no_speech(tmp_path: Path) -> None:
    vad = VoiceActivity()
    assert vad.segments(np.zeros(16000 * 3, np.float32)) == []
    noise = np.random.default_rng(0).normal(0, 0.01, 16000 * 3).astype(np.float32)
    path = write_wav(tmp_path / "noise.wav", noise)
    assert vad.segments(load_audio(path)) == []
    assert vad.segments(np.zeros(100, np.float32)) == []


@needs_espeak
def test_segments_are_shared_only_between_equal_settings(speech_wavs) -> None:
    media = MediaContext("s", speech_wavs[0][0])
    tight, padded = VoiceActivity(pad_s=0.03), VoiceActivity(pad_s=0.3)
    first = speech_segments(media, tight)
    assert speech_segments(media, VoiceActivity(pad_s=0.03)) is first  # computed once
    wide = speech_segments(media, padded)
    assert wide == padded.segments(media.audio) and wide != first
