"""Sentence embeddings from any local Hugging Face encoder folder; transcripts from the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from raypipe.extractors.audio.whisper_transcript import WhisperTranscriptExtractor
from raypipe.extractors.process import process_media
from raypipe.extractors.text.text_embedding import SentenceEncoder, TextEmbeddingExtractor
from raypipe.media.context import MediaContext
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from raypipe.store.schema import STATUS_NO_AUDIO
from raypipe.store.transcripts import load_transcripts
from tests.audio.conftest import spoken, write_silent_video, write_wav


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer BERT with a small word-piece vocabulary, saved."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = ["the", "a", "door", "park", "open", "please", "happy", "sad", "we", "are"]
    words += ["going", "to", "for", "me", "my"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip
    BertModel(config).save_pretrained(folder)
    return folder


def test_any_encoder_folder_mean_pools_tokens(tiny_bert: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    encoder = SentenceEncoder(str(tiny_bert), batch_size=2, normalize=False)
    texts = ["please open the door", "we are going to the park", "happy"]
    got = encoder.encode(texts)
    assert got.shape == (3, 32) and encoder.dim == 32
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with torch.no_grad():
        states = model(**tokenizer(texts[1], return_tensors="pt")).last_hidden_state[0]
    np.testing.assert_allclose(got[1], states.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    unit = SentenceEncoder(str(tiny_bert)).encode(texts)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)


def test_packaged_minilm_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceEncoder()
    text = ["we are going to the park after lunch"]
    reference = SentenceTransformer(str(encoder.folder), device="cpu").encode(text)
    np.testing.assert_allclose(encoder.encode(text), reference, atol=1e-5)


def test_transcripts_and_text_embeddings_through_the_store(tmp_path: Path, tiny_bert) -> None:
    sentence = "please open the door for me"
    files = {
        "talk": write_wav(tmp_path / "talk.wav", spoken(sentence)),
        "quiet": write_wav(tmp_path / "quiet.wav", np.zeros(16000 * 2, np.float32)),
        "mute": write_silent_video(tmp_path / "mute.mp4"),
    }
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    extractors = [WhisperTranscriptExtractor(), TextEmbeddingExtractor(model_dir=str(tiny_bert))]
    store.register_extractors(
        ExtractorRecord(e.name, e.version, e.level, e.dim, e.modality, e.config_dict())
        for e in extractors
    )
    for media_id, path in files.items():
        process_media(MediaContext(media_id, path), extractors, store)
    texts = load_transcripts(store.uri)
    assert texts["talk"].lower().strip(".") == sentence
    assert texts["quiet"] == "" and texts["mute"] == ""
    media = store.media_table("text_embedding").set_index("media_id")
    assert media.loc["mute", "status"] == STATUS_NO_AUDIO
    assert len(media.loc["talk", "features"]) == 32
    expected = SentenceEncoder(str(tiny_bert)).encode([texts["talk"]])[0]
    np.testing.assert_allclose(media.loc["talk", "features"], expected, atol=1e-5)
    segments = store.frame_table("text_embedding")
    assert set(segments["media_id"]) == {"talk"} and (segments["end_s"] > 1.0).all()
