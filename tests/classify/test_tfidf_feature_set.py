"""TF-IDF of stored transcripts as a feature set of `raypipe tune-classifiers`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from raypipe.classify.feature_matrix import load_feature_matrix, model_features
from raypipe.config import FeatureSetConfig, TuneClassifiersConfig
from raypipe.errors import RaypipeError
from raypipe.labels import label_space
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RunFolder
from raypipe.store.transcripts import load_transcripts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_vocabulary_comes_from_the_train_split_only(demo_store: str) -> None:
    store = FeatureStore(demo_store)
    matrix = load_feature_matrix(store, "whisper_transcript", "tfidf", label_space())
    assert matrix.name == "whisper_transcript.tfidf" and matrix.modality == "text"
    texts = load_transcripts(store)
    split = dict(zip(matrix.media_ids, matrix.split, strict=True))
    train_words = {
        w
        for m, t in texts.items()
        if split.get(m) == "train"
        for w in re.findall(r"\w\w+", t.lower())
    }
    vocabulary = set(matrix.pooler.model.vocabulary)
    assert vocabulary and vocabulary <= train_words
    assert matrix.x.shape == (len(matrix.media_ids), len(vocabulary))
    spoken = np.array([bool(texts.get(m, "").strip()) for m in matrix.media_ids])
    assert (np.abs(matrix.x[spoken]).sum(axis=1) > 0).mean() > 0.8  # words of train recur


def test_tfidf_models_are_searched_saved_and_reapplied(demo_store: str, tmp_path: Path) -> None:
    config = TuneClassifiersConfig(
        store=demo_store,
        run=tmp_path / "run",
        feature_sets=[FeatureSetConfig(extractor="whisper_transcript", pooling=["tfidf"])],
        classifiers=["logreg"],
        logreg_c=[1.0, 10.0],
    )
    best = run_tune_classifiers(config)
    assert list(best["model"]) == ["whisper_transcript.tfidf.logreg"]
    assert list(best["modality"]) == ["text"]
    run = RunFolder(tmp_path / "run")
    record = run.load_model("whisper_transcript.tfidf.logreg")
    again = model_features(FeatureStore(demo_store), record, label_space())
    stored = run.predictions("whisper_transcript.tfidf.logreg").set_index("media_id")
    probs = record["pipeline"].predict_proba(again.x)
    expected = np.stack(stored.loc[list(again.media_ids), "probs"].to_numpy())
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # The words carry part of the label (the demo's words tell some classes apart, not all):
    # better than chance (1/7) on val.
    assert float(best.iloc[0][f"val_{config.metric}"]) > 1 / 7


def test_tfidf_of_an_extractor_without_text_is_a_clear_error(demo_store: str) -> None:
    with pytest.raises(RaypipeError, match=r"no usable words|transcript"):
        load_feature_matrix(FeatureStore(demo_store), "opensmile", "tfidf", label_space())


def test_tfidf_options_are_checked_before_any_work() -> None:
    from raypipe.config.base import load_config
    from raypipe.errors import ConfigError

    config = load_config(TuneClassifiersConfig, None, ["tfidf={ngram_range: [1, 2]}"], {})
    assert config.tfidf == {"ngram_range": [1, 2]}
    with pytest.raises(ConfigError, match=r"field 'tfidf'.*tokenizer are not supported"):
        load_config(TuneClassifiersConfig, None, ["tfidf={tokenizer: split}"], {})
