"""Audio demux: any channel count and rate to 16 kHz mono; media without audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raypipe.errors import MediaError
from raypipe.extractors.audio.opensmile_functionals import OpenSmileExtractor
from raypipe.extractors.audio.vad import VadExtractor
from raypipe.extractors.process import process_media
from raypipe.media.audio import NoAudioError, has_audio, iter_audio, load_audio
from raypipe.media.context import MediaContext
from raypipe.media.decoder_process import FAULT_ENV, DecoderProcess
from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import STATUS_NO_AUDIO
from tests.audio.conftest import write_multichannel, write_silent_video, write_wav


def _dominant_hz(signal: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def test_eight_channel_44k_aac_becomes_16k_mono(tmp_path: Path) -> None:
    rate, seconds = 44100, 2.0
    t = np.arange(int(rate * seconds)) / rate
    channels = np.zeros((8, len(t)), np.float32)
    channels[0] = 0.5 * np.sin(2 * np.pi * 440.0 * t)  # a tone in one channel only
    channels[5] = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    path = write_multichannel(tmp_path / "octo.m4a", channels, rate, "7.1")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - seconds) < 0.1
    middle = audio[8000:24000]
    spectrum = np.abs(np.fft.rfft(middle))
    freqs = np.fft.rfftfreq(len(middle), 1 / 16000)
    assert spectrum[np.argmin(abs(freqs - 440))] > 10 * np.median(spectrum)
    assert spectrum[np.argmin(abs(freqs - 1000))] > 10 * np.median(spectrum)


def test_stereo_48k_wav_resampled_keeps_pitch(tmp_path: Path) -> None:
    rate = 48000
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 300.0 * t)
    path = write_wav(tmp_path / "stereo.wav", np.stack([tone, tone], axis=1), rate)
    audio = load_audio(path)
    assert abs(len(audio) - 16000) <= 16
    assert abs(_dominant_hz(audio) - 300.0) < 3.0
    assert np.abs(audio).max() == pytest.approx(0.3, abs=0.02)


def test_iter_audio_streams_fixed_chunks(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "long.wav", np.zeros(16000 * 5, np.float32))
    chunks = list(iter_audio(path, chunk_s=2.0))
    assert [len(c) for c in chunks] == [32000, 32000, 16000]


def test_video_without_audio_is_no_audio_not_failed(tmp_path: Path) -> None:
    video = write_silent_video(tmp_path / "mute.mp4")
    assert not has_audio(video)
    with pytest.raises(NoAudioError):
        load_audio(video)
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    extractors = [OpenSmileExtractor(), VadExtractor()]
    from raypipe.store.feature_store import ExtractorRecord

    store.register_extractors(
        ExtractorRecord(e.name, e.version, e.level, e.dim, e.modality, e.config_dict())
        for e in extractors
    )
    outcomes = process_media(MediaContext("mute", video), extractors, store)
    assert {o.status for o in outcomes} == {STATUS_NO_AUDIO}
    status = store.status()
    assert set(status["status"]) == {STATUS_NO_AUDIO}
    assert status["error"].str.contains("no audio stream").all()


@pytest.mark.parametrize("fault", ["hang", "crash"])
def test_audio_that_hangs_or_crashes_the_demuxer_costs_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    good = write_wav(tmp_path / "good.wav", tone)
    bad = write_wav(tmp_path / f"fault-{fault}.wav", tone)
    monkeypatch.setenv(FAULT_ENV, f"{fault}:fault-{fault}")
    process = DecoderProcess(timeout_s=3)
    try:
        np.testing.assert_array_equal(process.audio(good, 16000), load_audio(good, 16000))
        message = "hung" if fault == "hang" else "crashed on this file"
        with pytest.raises(MediaError, match=message):
            process.audio(bad, 16000)
        assert len(process.audio(good, 16000)) == 16000  # a fresh child serves the next file
        # Through the extraction path: a failed row for the bad file, the worker goes on.
        store = FeatureStore(str(tmp_path / "store"))
        store.initialise()
        vad = VadExtractor()
        for path, status in ((bad, "failed"), (good, "ok")):
            media = MediaContext(path.stem, path, decoder=process)
            [outcome] = process_media(media, [vad], store)
            assert outcome.status == status
    finally:
        process.close()
