"""Whisper transcription and encoder embeddings on espeak-ng speech; both backends."""

from __future__ import annotations

from pathlib import Path

import jiwer
import numpy as np
import pytest

from raypipe.extractors.audio.whisper_embedding import WhisperEmbeddingExtractor
from raypipe.extractors.audio.whisper_models import Segment, speech_clips
from raypipe.extractors.audio.whisper_transcript import (
    WhisperTranscriber,
    WhisperTranscriptExtractor,
)
from raypipe.media.audio import load_audio
from raypipe.media.context import MediaContext
from raypipe.media.speech import speak
from tests.audio.conftest import LEAD_S, spoken, write_wav

NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.Strip()])


@pytest.fixture(scope="module")
def transcripts(speech_wavs) -> list[tuple[str, str, object]]:
    """(reference, hypothesis, frame rows) per spoken sentence, default extractor."""
    extractor = WhisperTranscriptExtractor()
    out = []
    for i, (path, text) in enumerate(speech_wavs):
        result = extractor.extract(MediaContext(f"s{i}", path))
        rows = result.frame_rows.to_pandas()
        hypothesis = " ".join(rows.loc[rows["kind"] == "segment", "text"])
        out.append((text, NORMALISE(hypothesis), rows))
    return out


def test_word_error_rate_below_15_percent(transcripts) -> None:
    references = [r for r, _, _ in transcripts]
    hypotheses = [h for _, h, _ in transcripts]
    assert jiwer.wer(references, hypotheses) < 0.15, hypotheses


def test_segment_and_word_times_follow_the_speech(transcripts, speech_wavs) -> None:
    for (text, _, rows), (_, spoken_text) in zip(transcripts, speech_wavs, strict=True):
        speech, _ = speak(spoken_text, pitch=50, words_per_minute=150)
        speech_end = LEAD_S + len(speech) / 16000
        segments = rows[rows["kind"] == "segment"]
        words = rows[rows["kind"] == "word"]
        assert len(segments) >= 1 and set(segments["language"]) == {"en"}
        assert abs(segments["timestamp_s"].min() - LEAD_S) < 0.4
        assert segments["end_s"].max() < speech_end + 0.5
        assert len(words) == len(text.split())
        assert (words["end_s"] >= words["timestamp_s"]).all()
        assert np.all(np.diff(words["timestamp_s"].to_numpy()) >= 0)
        for _, word in words.iterrows():
            parent = segments[segments["segment_index"] == word["segment_index"]].iloc[0]
            assert parent["timestamp_s"] - 0.05 <= word["timestamp_s"] <= parent["end_s"]


def test_silence_gives_no_text(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).normal(0, 0.003, 16000 * 4).astype(np.float32)
    for name, signal in (("zeros", np.zeros(16000 * 4, np.float32)), ("hiss", noise)):
        path = write_wav(tmp_path / f"{name}.wav", signal)
        result = WhisperTranscriptExtractor().extract(MediaContext(name, path))
        assert result.frame_rows.num_rows == 0
        assert result.media_row["error"] == "no speech"


def test_quality_gates() -> None:
    transcriber = WhisperTranscriber()
    good = Segment(0.0, 1.0, "hello there", -0.3, 0.1, 1.2)
    assert transcriber.keep(good)
    assert not transcriber.keep(Segment(0.0, 1.0, "la la la la la la", -0.3, 0.1, 3.1))
    assert not transcriber.keep(Segment(0.0, 1.0, "you", -1.5, 0.9, 1.0))
    assert transcriber.keep(Segment(0.0, 1.0, "you", -0.5, 0.9, 1.0))  # confident text stays
    assert not transcriber.keep(Segment(0.0, 1.0, "", -0.1, 0.0, 1.0))


def test_speech_clips_join_and_cut() -> None:
    assert speech_clips([(1.0, 2.0), (2.5, 3.0), (10.0, 11.0)]) == [(1.0, 3.0), (10.0, 11.0)]
    assert speech_clips([(0.0, 70.0)]) == [(0.0, 30.0), (30.0, 60.0), (60.0, 70.0)]


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised openai-whisper checkpoint (English vocabulary)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
        n_vocab=51864, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("whisper") / "random-tiny.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": Whisper(dims).state_dict()}, path)
    return path


def test_openai_whisper_backend_on_a_local_checkpoint(speech_wavs, random_checkpoint) -> None:
    path = speech_wavs[0][0]
    options = dict(
        backend="openai-whisper",
        checkpoint=str(random_checkpoint),
        temperatures=[0.0],
        language="en",
        max_new_tokens=12,
    )
    extractor = WhisperTranscriptExtractor(**options)
    transcriber = extractor.transcriber
    media = MediaContext("s0", path)
    signal = load_audio(path)
    clips = speech_clips(transcriber.vad.segments(signal))
    raw, language = transcriber.model.transcribe(signal, clips, transcriber.settings)
    assert language == "en" and raw, "a random model still decodes tokens"
    for segment in raw:
        assert any(s - 1e-3 <= segment.start <= segment.end <= e + 0.05 for s, e in clips)
    # The extractor keeps exactly the decoded segments that pass the quality gates.
    rows = extractor.extract(media).frame_rows.to_pandas()
    kept = rows.loc[rows["kind"] == "segment", "text"].tolist()
    assert kept == [s.text for s in raw if transcriber.keep(s)]
    embedding = WhisperEmbeddingExtractor(
        backend="openai-whisper", checkpoint=str(random_checkpoint), segments=False
    )
    assert embedding.dim == 64
    row = embedding.extract(media).media_row
    assert len(row["features"]) == 64 and np.isfinite(row["features"]).all()


def _direct_encoder_states(signal: np.ndarray) -> np.ndarray:
    """The reference: the packaged CTranslate2 Whisper encoder run directly on openai-whisper's
    log-mel spectrogram of each 30 s piece, keeping the 50 Hz states that cover audio."""
    import ctranslate2
    import torch
    import whisper

    from raypipe.extractors.audio.whisper_models import default_model_dir

    model = ctranslate2.models.Whisper(str(default_model_dir()), device="cpu", compute_type="int8")
    states = []
    for start in range(0, len(signal), 30 * 16000):
        piece = signal[start : start + 30 * 16000]
        mel = whisper.log_mel_spectrogram(torch.from_numpy(whisper.pad_or_trim(piece)), 80)
        out = np.array(model.encode(ctranslate2.StorageView.from_array(mel.numpy()[None])))
        states.append(out[0, : int(np.ceil(len(piece) / 16000 * 50))])
    return np.concatenate(states)


def test_whisper_embedding_matches_the_encoder_run_directly(speech_wavs, tmp_path: Path) -> None:
    # Two sentences 30 s apart: the track is encoded in two pieces.
    first, second = (spoken(text) for _, text in speech_wavs[:2])
    signal = np.concatenate([first, np.zeros(30 * 16000 - len(first), np.float32), second])
    path = write_wav(tmp_path / "long.wav", signal)
    extractor = WhisperEmbeddingExtractor(window_s=1.0, hop_s=0.5)
    result = extractor.extract(MediaContext("s", path))
    reference = _direct_encoder_states(load_audio(path))
    assert reference.shape == (int(np.ceil(len(signal) / 16000 * 50)), 384)
    # int8 encoders on two mel implementations agree to about 0.02 (features about 0.3 on
    # average); a state off by one 20 ms frame is 10 times further.
    features = np.asarray(result.media_row["features"])
    np.testing.assert_allclose(features, reference.mean(axis=0), atol=0.03)
    rows = result.frame_rows.to_pandas()
    windows = rows[rows["kind"] == "window"].set_index("timestamp_s")
    for start_s in (1.0, 29.5, 30.5):  # in the first piece, across the pieces, in the second
        lo = int(start_s * 50)
        np.testing.assert_allclose(
            windows.loc[start_s, "features"], reference[lo : lo + 50].mean(axis=0), atol=0.05
        )
    segments = rows[rows["kind"] == "segment"]
    assert len(segments) == 2, segments[["timestamp_s", "end_s"]]
    assert abs(segments["timestamp_s"].iloc[0] - LEAD_S) < 0.3
    assert abs(segments["timestamp_s"].iloc[1] - 30 - LEAD_S) < 0.3
    for _, segment in segments.iterrows():
        lo = int(np.floor(segment["timestamp_s"] * 50))
        hi = int(np.ceil(segment["end_s"] * 50))
        np.testing.assert_allclose(segment["features"], reference[lo:hi].mean(axis=0), atol=0.03)


def test_batched_decoding_gives_the_same_text(tmp_path: Path) -> None:
    # batch_size > 1 decodes the speech clips together (the GPU path); it runs on CPU too.
    first, second = "please open the door for me", "we are going to the park after lunch"
    signal = np.concatenate([spoken(first), np.zeros(32000, np.float32), spoken(second)])
    path = write_wav(tmp_path / "two.wav", signal)
    texts = {}
    for batch_size in (1, 2):
        rows = WhisperTranscriptExtractor(batch_size=batch_size).extract(MediaContext("x", path))
        table = rows.frame_rows.to_pandas()
        segments = table[table["kind"] == "segment"]
        texts[batch_size] = [NORMALISE(t) for t in segments["text"]]
        assert segments["timestamp_s"].iloc[1] > 6.0  # the second sentence starts after 6 s
    assert texts[1] == texts[2] == [first, second]


def test_segment_and_word_times_are_clamped_into_their_speech_clip() -> None:
    from raypipe.extractors.audio.whisper_models import Segment, Word, clamp_to_clips

    clips = [(1.0, 2.0), (5.0, 6.0)]
    spill = Segment(
        4.9, 6.3, "b", -0.1, 0.0, 1.0, [Word(4.8, 5.2, "b", 0.9), Word(6.1, 6.4, "c", 1)]
    )
    inside = Segment(1.2, 1.8, "a", -0.1, 0.0, 1.0)
    stray = Segment(2.5, 2.9, "x", -0.1, 0.0, 1.0)  # overlaps nothing: nearest clip by start
    clamp_to_clips([spill, inside, stray], clips)
    assert (spill.start, spill.end) == (5.0, 6.0)
    assert [(w.start, w.end) for w in spill.words] == [(5.0, 5.2), (6.0, 6.0)]
    assert (inside.start, inside.end) == (1.2, 1.8)
    assert (stray.start, stray.end) == (2.0, 2.0)
