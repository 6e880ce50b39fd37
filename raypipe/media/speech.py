"""Speech for demo and test media: espeak-ng text-to-speech, or a synthetic voiced signal.

:func:`speak` runs the ``espeak-ng`` binary and returns 16 kHz mono float32 audio.
:func:`synthetic_voice` makes a vowel-like voiced signal (a glottal pulse train with jitter and
vibrato, shaped by formant resonators and a syllable envelope) whose pitch openSMILE and
autocorrelation can measure; :func:`speak_with_fallback` uses it when espeak-ng is missing.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, resample_poly

from raypipe.errors import MediaError

log = logging.getLogger(__name__)

#: Sample rate (Hz) of all audio this module returns.
SAMPLE_RATE = 16000

#: espeak-ng's accepted ranges: pitch 0-99, speed 80-450 words per minute.
PITCH_RANGE = (0, 99)
WPM_RANGE = (80, 450)

# Median f0 (Hz) that espeak-ng's default English voice speaks at for a few -p values
# (measured on espeak-ng 1.51); used to give the synthetic voice a comparable pitch.
_PITCH_POINTS = (0.0, 20.0, 50.0, 80.0, 99.0)
_F0_POINTS = (66.0, 75.0, 99.0, 137.0, 165.0)

# Formant frequencies and bandwidths (Hz) of five vowels (a, e, i, o, u) for the synthetic voice.
_VOWELS = (
    ((730.0, 80.0), (1090.0, 90.0), (2440.0, 120.0)),
    ((530.0, 70.0), (1840.0, 100.0), (2480.0, 120.0)),
    ((270.0, 60.0), (2290.0, 100.0), (3010.0, 120.0)),
    ((570.0, 70.0), (840.0, 80.0), (2410.0, 120.0)),
    ((300.0, 60.0), (870.0, 80.0), (2240.0, 120.0)),
)

_warned_fallback = False


def espeak_available() -> bool:
    """True if the ``espeak-ng`` binary is on ``PATH``."""
    return shutil.which("espeak-ng") is not None


def pitch_to_f0(pitch: int) -> float:
    """Approximate median f0 in Hz of espeak-ng's default voice at ``-p pitch`` (0-99)."""
    return float(np.interp(pitch, _PITCH_POINTS, _F0_POINTS))


def _to_rate(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    common = math.gcd(rate, target)
    return resample_poly(audio, target // common, rate // common)


def speak(
    text: str, pitch: int, words_per_minute: int, voice: str = "en"
) -> tuple[np.ndarray, int]:
    """Say ``text`` with espeak-ng; return ``(audio, 16000)``.

    Args:
        text: What to say (plain text).
        pitch: espeak-ng pitch, 0-99 (50 is the voice's default; about 75 Hz at 20, 99 Hz at
            50 and 137 Hz at 80 for the default English voice).
        words_per_minute: Speaking rate, 80-450 words per minute.
        voice: espeak-ng voice name, e.g. ``"en"``, ``"en-us"``.

    Returns:
        Mono float32 samples in [-1, 1] at 16000 Hz, and the sample rate (16000).

    Raises:
        ValueError: If ``text`` is empty or ``pitch``/``words_per_minute`` is out of range.
        MediaError: If espeak-ng is missing or fails (for instance on an unknown voice).
    """
    if not text.strip():
        raise ValueError("text must not be empty")
    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise ValueError(f"pitch must be in {PITCH_RANGE}, got {pitch}")
    if not WPM_RANGE[0] <= words_per_minute <= WPM_RANGE[1]:
        raise ValueError(f"words_per_minute must be in {WPM_RANGE}, got {words_per_minute}")
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise MediaError(
            "espeak-ng is not installed; install it (apt-get install espeak-ng, or run "
            "scripts/setup.sh as root) or use synthetic_voice()."
        )
    with tempfile.TemporaryDirectory(prefix="raypipe-speak-") as folder:
        wav = Path(folder) / "speech.wav"
        command = [binary, "--stdin", "-w", str(wav), "-p", str(int(pitch))]
        command += ["-s", str(int(words_per_minute)), "-v", voice]
        try:
            result = subprocess.run(
                command, input=text, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MediaError(f"espeak-ng could not run ({exc}); check its installation.") from exc
        if result.returncode != 0 or not wav.is_file():
            message = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
            raise MediaError(
                f"espeak-ng failed for voice '{voice}' ({message}); pick a voice listed by "
                "'espeak-ng --voices'."
            )
        samples, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = _to_rate(samples.mean(axis=1), int(rate), SAMPLE_RATE)
    return np.clip(audio, -1.0, 1.0).astype(np.float32), SAMPLE_RATE


def _resonator(frequency: float, bandwidth: float, sample_rate: int) -> tuple[list, list]:
    """Second-order all-pole resonator (unity gain at 0 Hz) at ``frequency`` Hz."""
    radius = math.exp(-math.pi * bandwidth / sample_rate)
    theta = 2.0 * math.pi * frequency / sample_rate
    a = [1.0, -2.0 * radius * math.cos(theta), radius * radius]
    return [sum(a)], a


def _glottal_flow(phase: np.ndarray, open_rise: float = 0.4, open_fall: float = 0.16) -> np.ndarray:
    """Rosenberg glottal flow pulse for ``phase`` in [0, 1) of each pitch period."""
    flow = np.zeros_like(phase)
    rising = phase < open_rise
    flow[rising] = 0.5 * (1.0 - np.cos(np.pi * phase[rising] / open_rise))
    falling = (phase >= open_rise) & (phase < open_rise + open_fall)
    flow[falling] = np.cos(0.5 * np.pi * (phase[falling] - open_rise) / open_fall)
    return flow


def synthetic_voice(
    duration_s: float,
    f0_hz: float,
    sample_rate: int = SAMPLE_RATE,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A voiced, vowel-like signal with fundamental frequency ``f0_hz``.

    A Rosenberg glottal pulse train at ``f0_hz`` (with about 1% vibrato at ~5.5 Hz and slow
    random jitter of about 0.5%) is differentiated (lip radiation) and passed through three
    formant resonators of a vowel chosen per syllable; syllables of 0.15-0.3 s with short gaps
    give a speech-like amplitude envelope. Pitch trackers (autocorrelation, openSMILE F0)
    measure ``f0_hz``.

    Args:
        duration_s: Length in seconds.
        f0_hz: Fundamental frequency in Hz (50-500).
        sample_rate: Sample rate in Hz.
        rng: Random generator for jitter, vowels and syllable timing (default: seeded with 0).

    Returns:
        Mono float32 samples in [-1, 1] (peak 0.5), ``round(duration_s * sample_rate)`` long.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if not 50.0 <= f0_hz <= 500.0:
        raise ValueError(f"f0_hz must be in [50, 500] Hz, got {f0_hz}")
    rng = rng if rng is not None else np.random.default_rng(0)
    n = round(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    vibrato = 0.01 * np.sin(2.0 * np.pi * 5.5 * t + rng.uniform(0.0, 2.0 * np.pi))
    # Slow jitter: white noise smoothed over ~20 ms, scaled to about 0.5% standard deviation.
    kernel = np.hanning(max(3, int(0.02 * sample_rate)))
    jitter = np.convolve(rng.standard_normal(n), kernel / kernel.sum(), mode="same")
    jitter *= 0.005 / max(float(jitter.std()), 1e-12)
    frequency = f0_hz * (1.0 + vibrato + jitter)
    phase = np.cumsum(frequency) / sample_rate % 1.0
    excitation = np.diff(_glottal_flow(phase), prepend=0.0)

    audio = np.zeros(n)
    start = int(rng.uniform(0.02, 0.08) * sample_rate)
    while start < n:
        length = min(int(rng.uniform(0.15, 0.30) * sample_rate), n - start)
        if length < int(0.05 * sample_rate):
            break
        segment = excitation[start : start + length]
        for frequency_hz, bandwidth in _VOWELS[int(rng.integers(len(_VOWELS)))]:
            b, a = _resonator(frequency_hz, bandwidth, sample_rate)
            segment = lfilter(b, a, segment)
        # Raised-cosine onset and offset (30% of the syllable each).
        ramp = max(1, int(0.3 * length))
        envelope = np.ones(length)
        edge = 0.5 * (1.0 - np.cos(np.pi * np.arange(ramp) / ramp))
        envelope[:ramp] = edge
        envelope[length - ramp :] = edge[::-1]
        audio[start : start + length] = segment * envelope * rng.uniform(0.6, 1.0)
        start += length + int(rng.uniform(0.03, 0.10) * sample_rate)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio *= 0.5 / peak
    audio += 0.001 * rng.standard_normal(n)  # a faint noise floor, as in a real recording
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def speak_with_fallback(
    text: str,
    pitch: int,
    words_per_minute: int,
    rng: np.random.Generator | None = None,
    voice: str = "en",
) -> tuple[np.ndarray, int]:
    """:func:`speak` if espeak-ng is installed, else :func:`synthetic_voice` (with a warning).

    The synthetic voice gets the f0 that espeak-ng would use at ``pitch``
    (:func:`pitch_to_f0`) and the duration the text would take at ``words_per_minute``.
    Returns ``(audio, 16000)``: mono float32 samples in [-1, 1] and the sample rate in Hz.
    """
    global _warned_fallback
    if espeak_available():
        return speak(text, pitch, words_per_minute, voice)
    if not _warned_fallback:
        log.warning(
            "espeak-ng is not installed; using a synthetic voice instead of speech "
            "(install espeak-ng for real speech)"
        )
        _warned_fallback = True
    duration_s = max(0.5, 60.0 * len(text.split()) / max(words_per_minute, 1))
    return synthetic_voice(duration_s, pitch_to_f0(pitch), SAMPLE_RATE, rng), SAMPLE_RATE


#: Autocorrelation an estimate gives up per octave of longer lag (period) in
#: :func:`estimate_f0`.
OCTAVE_COST = 0.02


def estimate_f0(
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    fmin_hz: float = 50.0,
    fmax_hz: float = 500.0,
    frame_s: float = 0.06,
) -> float:
    """Median fundamental frequency in Hz of the voiced frames of ``audio`` (autocorrelation).

    Frames of ``frame_s`` seconds (hop 10 ms) whose level is within 30 dB of the loudest
    frame and whose normalised autocorrelation peak in the ``[fmin_hz, fmax_hz]`` lag range
    exceeds 0.5 count as voiced; a frame's period is the lag where that autocorrelation, less
    :data:`OCTAVE_COST` per octave of lag, peaks. Returns ``nan`` if no frame is voiced.
    """
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    size = int(frame_s * sample_rate)
    hop = int(0.01 * sample_rate)
    if len(audio) < size:
        return float("nan")
    window = np.hanning(size)
    starts = np.arange(0, len(audio) - size + 1, hop)
    frames = np.stack([audio[s : s + size] for s in starts])
    frames = (frames - frames.mean(axis=1, keepdims=True)) * window
    level = np.sqrt((frames**2).mean(axis=1))
    frames = frames[level > level.max() * 10 ** (-30 / 20)]

    def autocorrelation(x: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(x, n=2 * size, axis=-1)
        return np.fft.irfft(np.abs(spectrum) ** 2, axis=-1)[..., :size]

    # Dividing by the window's own autocorrelation undoes the taper's bias against long lags
    # (Boersma 1993), so the true period beats its harmonics and formant ripples.
    low = max(1, int(sample_rate / fmax_hz))
    high = min(size // 2, int(sample_rate / fmin_hz))
    window_correlation = autocorrelation(window)[: high + 2]
    window_correlation /= window_correlation[0]
    lags = np.arange(low, high + 1)
    estimates = []
    for row in autocorrelation(frames):
        if row[0] <= 0:
            continue
        row = row[: high + 2] / row[0] / window_correlation
        # A periodic signal correlates as well at every multiple of its period; a small cost
        # per octave of lag (Boersma 1993's octave cost) picks the period, not a multiple.
        lag = low + int(np.argmax(row[low : high + 1] - OCTAVE_COST * np.log2(lags)))
        if row[lag] < 0.5:
            continue
        # Parabolic interpolation around the peak for sub-sample lag precision.
        left, centre, right = row[lag - 1], row[lag], row[lag + 1]
        denominator = left - 2 * centre + right
        offset = 0.5 * (left - right) / denominator if denominator != 0 else 0.0
        estimates.append(sample_rate / (lag + offset))
    return float(np.median(estimates)) if estimates else float("nan")
