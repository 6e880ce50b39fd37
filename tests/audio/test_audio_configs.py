"""Config of the audio and text extractors: defaults, shared transcription, user errors."""

from __future__ import annotations

import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.errors import ConfigError
from raypipe.pipeline.extract import extractor_specs

AUDIO_TEXT = {"opensmile", "opensmile_lld", "vad", "whisper_transcript", "whisper_embedding",
              "text_embedding"}  # fmt: skip


def test_default_extract_runs_every_offline_audio_and_text_extractor() -> None:
    names = {name for name, _ in extractor_specs(ExtractConfig())}
    assert names >= AUDIO_TEXT


def test_text_embedding_transcribes_like_whisper_transcript() -> None:
    config = load_config(
        ExtractConfig, None, ["whisper_transcript.language=en", "whisper_transcript.beam_size=3"]
    )
    specs = dict(extractor_specs(config))
    transcriber = specs["text_embedding"]["transcriber"]
    assert transcriber["language"] == "en" and transcriber["beam_size"] == 3
    assert "enabled" not in transcriber and "gpu_fraction" not in transcriber


def test_openai_backend_needs_a_checkpoint() -> None:
    with pytest.raises(ConfigError, match="checkpoint"):
        load_config(ExtractConfig, None, ["whisper_transcript.backend=openai-whisper"])
