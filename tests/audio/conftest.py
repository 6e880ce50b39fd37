"""Test media for audio tests: espeak-ng speech, multi-channel files, silent videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from raypipe.media.speech import espeak_available, speak

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")

#: Clear sentences of common words (espeak-ng, default English voice).
SENTENCES = (
    "please open the door for me",
    "we are going to the park after lunch",
    "my brother plays football on sunday",
    "thank you very much for your help",
)
#: Seconds of silence before the speech in :func:`speech_file`.
LEAD_S = 1.0


def spoken(text: str, lead_s: float = LEAD_S, tail_s: float = 1.0) -> np.ndarray:
    """``text`` spoken by espeak-ng at 16 kHz between silences of ``lead_s`` and ``tail_s``."""
    audio, rate = speak(text, pitch=50, words_per_minute=150)
    return np.concatenate(
        [np.zeros(int(lead_s * rate), np.float32), audio, np.zeros(int(tail_s * rate), np.float32)]
    )


def write_wav(path: Path, signal: np.ndarray, rate: int = 16000) -> Path:
    """Write float samples (N,) or (N, channels) to a 16-bit WAV file."""
    sf.write(str(path), signal, rate, subtype="PCM_16")
    return path


def write_multichannel(path: Path, signal: np.ndarray, rate: int, layout: str) -> Path:
    """Encode (channels, N) float samples with PyAV as AAC (container from the suffix)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout=layout)
        planar = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
        frame_len = 1024
        for start in range(0, signal.shape[1] + 1, frame_len):
            block = signal[:, start : start + frame_len]
            frames = [None]
            if block.shape[1]:
                packed = np.ascontiguousarray(block.T.reshape(1, -1), np.float32)
                frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=layout)
                frame.sample_rate = rate
                frames = planar.resample(frame)
            else:
                frames = planar.resample(None)
            for out in frames:
                for packet in stream.encode(out):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def write_silent_video(path: Path, seconds: float = 1.0, fps: int = 10) -> Path:
    """An .mp4 with a video stream and no audio stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * fps)):
            image = np.full((48, 64, 3), (i * 20) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def speech_wavs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """(wav path, sentence) for each of :data:`SENTENCES`, 1 s of silence before and after."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("speech")
    return [
        (write_wav(folder / f"s{i}.wav", spoken(text)), text) for i, text in enumerate(SENTENCES)
    ]
