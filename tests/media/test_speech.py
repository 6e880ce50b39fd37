"""Speech: espeak-ng output, the synthetic fallback voice, and the f0 estimator."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from raypipe.errors import MediaError
from raypipe.media import speech
from raypipe.media.speech import (
    SAMPLE_RATE,
    espeak_available,
    estimate_f0,
    pitch_to_f0,
    speak,
    speak_with_fallback,
    synthetic_voice,
)

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")
SENTENCE = "The meeting starts at nine tomorrow"


@needs_espeak
def test_speak_returns_audible_16khz_speech() -> None:
    audio, rate = speak(SENTENCE, pitch=50, words_per_minute=175)
    assert rate == SAMPLE_RATE == 16000
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 <= len(audio) / rate <= 3.0
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.02  # clearly not silent
    assert 60.0 < estimate_f0(audio) < 200.0


@needs_espeak
def test_speak_pitch_and_rate_take_effect() -> None:
    f0 = [estimate_f0(speak(SENTENCE, pitch, 175)[0]) for pitch in (15, 50, 85)]
    assert f0[0] < f0[1] < f0[2]
    assert f0[2] / f0[0] > 1.6
    slow, _ = speak(SENTENCE, 50, 120)
    fast, _ = speak(SENTENCE, 50, 250)
    assert len(slow) > 1.5 * len(fast)


@needs_espeak
def test_speak_is_deterministic() -> None:
    first, _ = speak(SENTENCE, 40, 160)
    second, _ = speak(SENTENCE, 40, 160)
    assert np.array_equal(first, second)


@needs_espeak
def test_speak_reports_unknown_voice() -> None:
    with pytest.raises(MediaError, match="nosuchvoice"):
        speak(SENTENCE, 50, 175, voice="nosuchvoice")


def test_speak_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pitch"):
        speak(SENTENCE, 120, 175)
    with pytest.raises(ValueError, match="words_per_minute"):
        speak(SENTENCE, 50, 20)
    with pytest.raises(ValueError, match="empty"):
        speak("   ", 50, 175)


@pytest.mark.parametrize("f0_hz", [75.0, 100.0, 143.0, 220.0, 330.0])
def test_synthetic_voice_has_requested_f0(f0_hz: float) -> None:
    audio = synthetic_voice(2.0, f0_hz, SAMPLE_RATE, np.random.default_rng(3))
    assert audio.dtype == np.float32 and audio.shape == (2 * SAMPLE_RATE,)
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.02
    assert estimate_f0(audio, SAMPLE_RATE) == pytest.approx(f0_hz, rel=0.05)


def test_synthetic_voice_is_speech_like_and_seeded() -> None:
    audio = synthetic_voice(3.0, 120.0, SAMPLE_RATE, np.random.default_rng(0))
    same = synthetic_voice(3.0, 120.0, SAMPLE_RATE, np.random.default_rng(0))
    other = synthetic_voice(3.0, 120.0, SAMPLE_RATE, np.random.default_rng(1))
    assert np.array_equal(audio, same) and not np.array_equal(audio, other)
    # Syllables: the 20 ms energy envelope has both loud stretches and near-silent gaps.
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    level = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    assert (level < 0.05 * level.max()).mean() > 0.1
    assert (level > 0.3 * level.max()).mean() > 0.3
    # Formants: most energy lies between 200 Hz and 3.5 kHz, not just at f0.
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequency = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    band = spectrum[(frequency > 200) & (frequency < 3500)].sum()
    assert band / spectrum.sum() > 0.6


def test_synthetic_voice_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        synthetic_voice(0.0, 100.0)
    with pytest.raises(ValueError, match="f0_hz"):
        synthetic_voice(1.0, 20.0)


def test_fallback_without_espeak_uses_synthetic_voice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on PATH
    monkeypatch.setattr(speech, "_warned_fallback", False)
    assert not espeak_available()
    with pytest.raises(MediaError, match="espeak-ng is not installed"):
        speak(SENTENCE, 50, 175)
    with caplog.at_level(logging.WARNING, logger="raypipe.media.speech"):
        audio, rate = speak_with_fallback(SENTENCE, 85, 180, rng=np.random.default_rng(0))
    assert "synthetic voice" in caplog.text
    assert rate == SAMPLE_RATE
    assert len(audio) / rate == pytest.approx(6 * 60 / 180, abs=0.01)
    assert estimate_f0(audio) == pytest.approx(pitch_to_f0(85), rel=0.05)


@needs_espeak
def test_pitch_to_f0_matches_espeak() -> None:
    for pitch in (20, 50, 80):
        measured = estimate_f0(speak(SENTENCE, pitch, 175)[0])
        assert measured == pytest.approx(pitch_to_f0(pitch), rel=0.1)


@pytest.mark.parametrize("f0", [55.0, 110.0, 196.0, 261.6, 347.0, 440.0, 493.0])
def test_estimate_f0_of_pure_and_harmonic_tones(f0: float) -> None:
    """Tones of a known frequency, not the project's own voices: a pure sine, the same with
    a stronger second and third harmonic, and the sine after half a second of silence."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    pure = np.sin(2 * np.pi * f0 * t)
    rich = 0.4 * pure + np.sin(4 * np.pi * f0 * t + 1) + 0.6 * np.sin(6 * np.pi * f0 * t + 2)
    late = np.concatenate([np.zeros(SAMPLE_RATE // 2), pure])
    for tone in (pure, rich, late):
        assert estimate_f0(tone.astype(np.float32)) == pytest.approx(f0, rel=0.002)


def test_estimate_f0_of_silence_and_noise_is_nan() -> None:
    assert np.isnan(estimate_f0(np.zeros(SAMPLE_RATE, np.float32)))
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    assert np.isnan(estimate_f0(noise))
    assert np.isnan(estimate_f0(np.zeros(10, np.float32)))
