"""openSMILE extractors agree with the opensmile library called directly; silence is safe."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import opensmile
import pytest

from raypipe.extractors.audio.opensmile_functionals import OpenSmileExtractor, stream_functionals
from raypipe.extractors.audio.opensmile_lld import OpenSmileLldExtractor
from raypipe.media.audio import load_audio
from raypipe.media.context import MediaContext
from tests.audio.conftest import write_wav


def _direct(signal: np.ndarray, feature_set: str, level: opensmile.FeatureLevel):
    smile = opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set), feature_level=level
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smile.process_signal(signal, 16000)


@pytest.mark.parametrize("feature_set", ["eGeMAPSv02", "ComParE_2016"])
def test_functionals_and_lld_match_opensmile(speech_wavs, feature_set: str) -> None:
    path = speech_wavs[0][0]
    signal = load_audio(path)
    media = MediaContext("s0", path)

    result = OpenSmileExtractor(feature_set=feature_set).extract(media)
    expected = _direct(signal, feature_set, opensmile.FeatureLevel.Functionals).to_numpy()[0]
    got = np.asarray(result.media_row["features"], np.float32)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-6)
    assert result.media_row.get("error") is None

    rows = OpenSmileLldExtractor(feature_set=feature_set).extract(media).frame_rows.to_pandas()
    direct = _direct(signal, feature_set, opensmile.FeatureLevel.LowLevelDescriptors)
    assert len(rows) == len(direct)
    starts = direct.index.get_level_values("start").total_seconds().to_numpy()
    ends = direct.index.get_level_values("end").total_seconds().to_numpy()
    np.testing.assert_allclose(rows["timestamp_s"], starts, atol=1e-6)
    np.testing.assert_allclose(rows["end_s"], ends, atol=1e-6)
    np.testing.assert_allclose(
        np.stack(rows["features"]), direct.to_numpy(np.float32), rtol=1e-5, atol=1e-6
    )


def test_window_and_segment_functionals(speech_wavs) -> None:
    path = speech_wavs[1][0]
    signal = load_audio(path)
    extractor = OpenSmileExtractor(feature_set="eGeMAPSv02", window_s=2.0, hop_s=1.0, segments=True)
    rows = extractor.extract(MediaContext("s1", path)).frame_rows.to_pandas()
    windows = rows[rows["kind"] == "window"]
    assert windows["timestamp_s"].tolist()[:3] == [0.0, 1.0, 2.0]
    first = np.asarray(windows.iloc[1]["features"])
    direct = _direct(signal[16000:48000], "eGeMAPSv02", opensmile.FeatureLevel.Functionals)
    np.testing.assert_allclose(first, direct.to_numpy()[0], rtol=1e-5, atol=1e-6)
    segments = rows[rows["kind"] == "segment"]
    assert len(segments) >= 1
    assert 0.7 < segments["timestamp_s"].min() < 1.3  # speech starts after 1 s of silence


def test_silence_and_very_short_audio_are_flagged_not_crashes(tmp_path: Path) -> None:
    silent = write_wav(tmp_path / "silent.wav", np.zeros(32000, np.float32))
    short = write_wav(tmp_path / "short.wav", np.full(400, 0.1, np.float32))
    for feature_set in ("eGeMAPSv02", "ComParE_2016"):
        functionals = OpenSmileExtractor(feature_set=feature_set)
        row = functionals.extract(MediaContext("a", silent)).media_row
        assert "silent" in row["error"] and np.isfinite(row["features"]).all()
        row = functionals.extract(MediaContext("b", short)).media_row
        assert "NaN" in row["error"] and np.isnan(row["features"]).all()
        lld = OpenSmileLldExtractor(feature_set=feature_set).extract(MediaContext("b", short))
        assert lld.frame_rows.num_rows == 0 and "no LLD frames" in lld.media_row["error"]


def test_long_tracks_in_blocks_match_one_call(speech_wavs) -> None:
    speech = load_audio(speech_wavs[2][0])
    signal = np.tile(speech, int(np.ceil(130 * 16000 / len(speech))))[: 130 * 16000]
    extractor = OpenSmileLldExtractor(feature_set="eGeMAPSv02")
    starts, ends, values = extractor.lld(signal)  # three 60 s blocks
    direct = _direct(signal, "eGeMAPSv02", opensmile.FeatureLevel.LowLevelDescriptors)
    assert len(starts) == len(direct)
    np.testing.assert_allclose(starts, direct.index.get_level_values("start").total_seconds())
    np.testing.assert_allclose(ends, direct.index.get_level_values("end").total_seconds())
    np.testing.assert_allclose(values, direct.to_numpy(np.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feature_set", ["eGeMAPSv02", "ComParE_2016"])
def test_streamed_functionals_equal_one_call_on_the_whole_track(
    speech_wavs, feature_set: str
) -> None:
    # 27 s: more blocks than the input ring holds, and a last partial block.
    speech = load_audio(speech_wavs[2][0])
    signal = np.tile(speech, int(np.ceil(27 * 16000 / len(speech))))[: 27 * 16000 + 123]
    got = stream_functionals(OpenSmileExtractor(feature_set=feature_set)._smile, signal)
    expected = _direct(signal, feature_set, opensmile.FeatureLevel.Functionals).to_numpy()
    np.testing.assert_array_equal(got, expected)


def test_tracks_longer_than_a_chunk_are_the_length_weighted_mean_of_equal_parts(
    speech_wavs,
) -> None:
    speech = load_audio(speech_wavs[2][0])
    signal = np.tile(speech, int(np.ceil(25 * 16000 / len(speech))))[: 25 * 16000]
    extractor = OpenSmileExtractor(feature_set="eGeMAPSv02")
    assert extractor.functionals(signal).shape == (extractor.dim,)
    extractor.chunk_s = 10.0  # 25 s -> three parts of 8.33 s
    got = extractor.functionals(signal)
    bounds = np.linspace(0, len(signal), 4).astype(int)
    parts = [
        _direct(signal[a:b], "eGeMAPSv02", opensmile.FeatureLevel.Functionals).to_numpy()[0]
        for a, b in itertools.pairwise(bounds)
    ]
    expected = np.average(np.stack(parts), axis=0, weights=np.diff(bounds))
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    # The documented difference: not the whole track's functionals, but close to them for
    # means of a stationary signal (a repeated sentence here).
    whole = _direct(signal, "eGeMAPSv02", opensmile.FeatureLevel.Functionals).iloc[0]
    names = extractor.feature_names
    loudness = names.index("loudness_sma3_amean")
    assert not np.array_equal(got, whole.to_numpy(np.float32))
    assert abs(got[loudness] - whole.iloc[loudness]) < 0.05 * abs(whole.iloc[loudness])
