"""TF-IDF text features whose vocabulary is fitted on training transcripts only.

The fitted vocabulary and inverse document frequencies are saved as plain JSON with the run, so
predictions on new media use exactly the vocabulary the classifiers were trained with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from raypipe.errors import ConfigError

log = logging.getLogger(__name__)

#: TfidfVectorizer options that may be set (everything else is fixed for reproducibility).
ALLOWED_OPTIONS = {
    "lowercase",
    "ngram_range",
    "max_features",
    "min_df",
    "max_df",
    "sublinear_tf",
    "stop_words",
    "norm",
    "use_idf",
    "smooth_idf",
    "binary",
    "analyzer",
}
#: Format of saved models.
FORMAT = 1


class TfidfModel:
    """A fitted TF-IDF transform: texts -> (N, vocabulary size) float32 rows.

    Args:
        vectorizer: a fitted scikit-learn TfidfVectorizer.
        options: the options it was built with (saved with the model).
    """

    def __init__(self, vectorizer: TfidfVectorizer, options: dict[str, Any]) -> None:
        self._vectorizer = vectorizer
        self.options = dict(options)

    @property
    def vocabulary(self) -> list[str]:
        """Terms in column order."""
        return list(self._vectorizer.get_feature_names_out())

    @property
    def dim(self) -> int:
        """Number of columns of :meth:`transform`."""
        return len(self._vectorizer.vocabulary_)

    def transform(self, texts: list[str]) -> np.ndarray:
        """TF-IDF rows of ``texts`` (dense float32, shape (len(texts), dim)); unknown words are
        ignored and empty texts give zero rows."""
        clean = [text if isinstance(text, str) else "" for text in texts]
        return np.asarray(self._vectorizer.transform(clean).todense(), dtype=np.float32)

    def save(self, path: str | Path) -> None:
        """Write the model to ``path`` as JSON (options, vocabulary, idf)."""
        vectorizer = self._vectorizer
        payload: dict[str, Any] = {
            "format": FORMAT,
            "options": _jsonable(self.options),
            "vocabulary": {term: int(i) for term, i in vectorizer.vocabulary_.items()},
        }
        if getattr(vectorizer, "use_idf", True):
            payload["idf"] = [float(v) for v in vectorizer.idf_]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(json.dumps(payload))
        temporary.replace(target)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


def _vectorizer(
    options: dict[str, Any], vocabulary: dict[str, int] | None = None
) -> TfidfVectorizer:
    unknown = sorted(set(options) - ALLOWED_OPTIONS)
    if unknown:
        raise ConfigError(
            f"TF-IDF option(s) {', '.join(unknown)} are not supported; use only "
            f"{', '.join(sorted(ALLOWED_OPTIONS))}."
        )
    settings = dict(options)
    if "ngram_range" in settings:
        settings["ngram_range"] = tuple(settings["ngram_range"])
    return TfidfVectorizer(dtype=np.float32, vocabulary=vocabulary, **settings)


def fit_tfidf(texts: list[str], **options: Any) -> TfidfModel:
    """Fit a TF-IDF vocabulary on ``texts`` (the train split's transcripts only).

    Args:
        texts: one transcript per training media (empty strings for media without speech).
        **options: TfidfVectorizer options from :data:`ALLOWED_OPTIONS`, e.g.
            ``ngram_range=(1, 2)``, ``min_df=2``, ``sublinear_tf=True``.

    Raises:
        ConfigError: an option is unknown, or the texts hold no words at all.
    """
    vectorizer = _vectorizer(options)
    clean = [text if isinstance(text, str) else "" for text in texts]
    try:
        vectorizer.fit(clean)
    except ValueError as exc:  # empty vocabulary, or min_df/max_df leave nothing
        raise ConfigError(
            f"TF-IDF found no usable words in {len(clean)} training transcripts ({exc}); check "
            "that transcription ran (`raypipe store status`) or relax min_df/max_df."
        ) from None
    log.info("TF-IDF fitted on %d texts: %d terms", len(clean), len(vectorizer.vocabulary_))
    return TfidfModel(vectorizer, options)


def load_tfidf(path: str | Path) -> TfidfModel:
    """Read a model written by :meth:`TfidfModel.save`.

    Raises:
        ConfigError: the file is missing or is not a saved TF-IDF model.
    """
    source = Path(path)
    try:
        payload = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{source}: cannot read a TF-IDF model ({exc}); point to a file written by "
            "TfidfModel.save."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{source}: not a TF-IDF model of format {FORMAT}; refit and save it.")
    options = payload["options"]
    # Fitting with the saved vocabulary fixed only builds the transformer's state (an empty
    # document teaches nothing); the saved idf weights then replace its own.
    vectorizer = _vectorizer(options, dict(payload["vocabulary"])).fit([""])
    if "idf" in payload:
        vectorizer.idf_ = np.asarray(payload["idf"], dtype=np.float32)
    return TfidfModel(vectorizer, options)


class TfidfPooler:
    """TF-IDF as a feature-set "pooling" of a transcript extractor: fitted on the train split's
    transcripts, then one (vocabulary size,) vector per media transcript.

    Saved inside a model record (like the GMM of Fisher vectors), so the vocabulary learnt on
    train travels with the run's models and is reused unchanged by ``raypipe predict``.

    Args:
        **options: TfidfVectorizer options from :data:`ALLOWED_OPTIONS`.
    """

    name = "tfidf"

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.model: TfidfModel | None = None

    def fit(self, texts: list[str]) -> TfidfPooler:
        """Fit the vocabulary and idf on training transcripts."""
        self.model = fit_tfidf(list(texts), **self.options)
        return self

    def encode(self, text: str) -> np.ndarray:
        """TF-IDF vector of one transcript (zeros for an empty one)."""
        if self.model is None:
            raise RuntimeError("TfidfPooler.encode before fit")
        return self.model.transform([text])[0]
