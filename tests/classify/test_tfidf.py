"""TF-IDF fitted on training texts only, saved with the run and loaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from raypipe.classify.tfidf import fit_tfidf, load_tfidf
from raypipe.errors import ConfigError

TRAIN = ["i am so happy today", "what a happy sunny day", "i feel sad and alone", ""]
TEST = ["happy and sad", "completely unseen words", ""]


def test_matches_scikit_learn_and_ignores_unseen_words() -> None:
    model = fit_tfidf(TRAIN, ngram_range=(1, 2), sublinear_tf=True)
    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(TRAIN)
    np.testing.assert_allclose(
        model.transform(TEST), reference.transform(TEST).toarray(), rtol=1e-6
    )
    assert "unseen" not in model.vocabulary
    assert not model.transform(["completely unseen words"]).any()
    assert model.transform(TEST).shape == (3, model.dim)


@pytest.mark.parametrize(
    "options", [{}, {"use_idf": False}, {"sublinear_tf": True, "ngram_range": (1, 2), "min_df": 2}]
)
def test_save_and_load_round_trip(tmp_path: Path, options: dict) -> None:
    model = fit_tfidf(TRAIN, **{"min_df": 1, "max_features": 6, **options})
    path = tmp_path / "run" / "text" / "tfidf.json"
    model.save(path)
    loaded = load_tfidf(path)
    assert loaded.vocabulary == model.vocabulary and loaded.dim == model.dim > 0
    np.testing.assert_array_equal(loaded.transform(TEST), model.transform(TEST))


def test_user_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        fit_tfidf(TRAIN, tokenizer=str.split)
    with pytest.raises(ConfigError, match="no usable words"):
        fit_tfidf(["", ""])
    with pytest.raises(ConfigError, match="cannot read"):
        load_tfidf(tmp_path / "missing.json")
