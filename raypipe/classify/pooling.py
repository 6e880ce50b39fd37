"""Frame-to-media pooling: statistics over a media's (T, D) frame vectors, fitted encodings
(Fisher vectors, VLAD; see :mod:`raypipe.classify.encoding`), fixed-length window sequences for
sequence heads and TF-IDF of a media's transcript (:mod:`raypipe.classify.tfidf`).

Every pooling is a :class:`Pooler` with ``fit`` (a no-op unless it learns a codebook from the
training split) and ``encode`` (one media's (T, D) frames, or its transcript -> one vector). A
fitted pooler is saved with the model that was trained on its output, so prediction pools new
media identically. Every pooling is one entry of :data:`POOLINGS` (docs/extending.md); config
validation, the feature matrices and the search read that registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from raypipe.registry import Registry

#: Statistics computed by :func:`pool` (no fitting); 'pct' gives the 10th, 50th and 90th
#: percentiles. Each is also a pooling of :data:`POOLINGS`.
STAT_POOLINGS = ("mean", "max", "std", "meanstd", "pct")

PERCENTILES = (10.0, 50.0, 90.0)


def pool(vectors: np.ndarray, method: str) -> np.ndarray:
    """Pool (T, D) frame vectors into one media vector with a statistic.

    'mean', 'max' and 'std' give D values; 'meanstd' gives 2D (mean then std); 'pct' gives 3D
    (10th, 50th, 90th percentile, each over D). With no frames (T = 0) the result is all-NaN,
    so a downstream imputer can fill it.
    """
    if method not in STAT_POOLINGS:
        raise ValueError(f"unknown pooling '{method}'; allowed: {', '.join(STAT_POOLINGS)}")
    vectors = np.asarray(vectors, dtype=np.float32)
    width = vectors.shape[1] if vectors.ndim == 2 else 0
    factor = {"meanstd": 2, "pct": len(PERCENTILES)}.get(method, 1)
    if vectors.ndim != 2 or len(vectors) == 0:
        return np.full(factor * width, np.nan, dtype=np.float32)
    if method == "mean":
        return vectors.mean(axis=0)
    if method == "max":
        return vectors.max(axis=0)
    if method == "std":
        return vectors.std(axis=0)
    if method == "pct":
        return np.percentile(vectors, PERCENTILES, axis=0).reshape(-1).astype(np.float32)
    return np.concatenate([vectors.mean(axis=0), vectors.std(axis=0)])


class Pooler(Protocol):
    """Turns a media's (T, D) frame vectors into one fixed-size vector."""

    name: str

    def fit(self, sequences: Sequence[np.ndarray]) -> Pooler:
        """Learn what the pooling needs from training media's frames (each (T, D))."""
        ...

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """One media's (T, D) frames -> (out_dim(D),) float32; all-NaN when T = 0."""
        ...


class StatPooler:
    """A statistics pooling (:func:`pool`); nothing to fit."""

    def __init__(self, method: str) -> None:
        if method not in STAT_POOLINGS:
            raise ValueError(f"unknown pooling '{method}'; allowed: {', '.join(STAT_POOLINGS)}")
        self.name = method

    def fit(self, sequences: Sequence[np.ndarray]) -> StatPooler:
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        return pool(vectors, self.name)


class WindowSequencePooler:
    """Fixed-length window sequences for sequence heads.

    Frames are cut into windows of ``window`` frames every ``hop`` frames; each window becomes
    the mean of its frames (a last, shorter window too); the first ``steps`` windows are kept
    (missing ones padded with zeros). The media
    vector is ``[mask (steps,), window means (steps * D,)]`` with mask 1 for real windows, so a
    media-level matrix row holds a whole sequence; :func:`split_sequence` undoes the layout.
    """

    name = "seq"

    def __init__(self, window: int = 4, hop: int = 2, steps: int = 8) -> None:
        if window < 1 or hop < 1 or steps < 1:
            raise ValueError("window, hop and steps must be at least 1")
        self.window, self.hop, self.steps = window, hop, steps

    def fit(self, sequences: Sequence[np.ndarray]) -> WindowSequencePooler:
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        t, d = vectors.shape
        out = np.zeros((self.steps, d), np.float32)
        mask = np.zeros(self.steps, np.float32)
        for step in range(self.steps):
            start = step * self.hop
            if start >= t:
                break
            out[step] = vectors[start : start + self.window].mean(axis=0)
            mask[step] = 1.0
        return np.concatenate([mask, out.reshape(-1)])


def split_sequence(x: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Undo :class:`WindowSequencePooler`'s layout: (N, steps + steps*D) -> windows
    (N, steps, D) float32 and mask (N, steps) bool."""
    x = np.asarray(x, dtype=np.float32)
    width = x.shape[1] - steps
    if width <= 0 or width % steps:
        raise ValueError(f"a sequence matrix with {x.shape[1]} columns does not hold {steps} steps")
    mask = x[:, :steps] > 0.5
    windows = x[:, steps:].reshape(len(x), steps, width // steps)
    return windows, mask


@dataclass(frozen=True)
class PoolingEntry:
    """A registered pooling.

    Attributes:
        name: the pooling's name in configs (``pooling: [name]``) and feature-set names
            (``<extractor>.<name>``).
        build: ``(params, seed) -> Pooler``, an unfitted pooler. ``params`` holds the search
            config's pooling settings: 'components' (Fisher), 'clusters' (VLAD), 'window',
            'hop', 'steps' (sequences) and 'tfidf' (TF-IDF options); ``seed`` seeds fitting.
        description: one line for docs and errors.
        fitted: learns from the training split (``fit`` is not a no-op).
        sequence: its output is a window sequence (:func:`split_sequence`'s layout), read only
            by sequence classifiers; every other classifier reads the other poolings.
        source: what it pools: 'frames' ((T, D) vectors of a frame-level extractor) or 'text'
            (a media's transcript, from a transcription extractor).
    """

    name: str
    build: Callable[[dict[str, Any], int], Pooler]
    description: str = ""
    fitted: bool = False
    sequence: bool = False
    source: Literal["frames", "text"] = "frames"


#: Every pooling by name.
POOLINGS: Registry[PoolingEntry] = Registry("POOLINGS", "pooling")


def register_pooling(
    name: str,
    *,
    description: str = "",
    fitted: bool = False,
    sequence: bool = False,
    source: Literal["frames", "text"] = "frames",
) -> Callable[[Callable[[dict[str, Any], int], Pooler]], Callable[[dict[str, Any], int], Pooler]]:
    """Decorator registering a ``(params, seed) -> Pooler`` builder as pooling ``name``."""

    def decorator(
        build: Callable[[dict[str, Any], int], Pooler],
    ) -> Callable[[dict[str, Any], int], Pooler]:
        POOLINGS.register(name, PoolingEntry(name, build, description, fitted, sequence, source))
        return build

    return decorator


def _stat_builder(method: str) -> Callable[[dict[str, Any], int], Pooler]:
    def build(params: dict[str, Any], seed: int) -> Pooler:
        return StatPooler(method)

    return build


for _method, _description in (
    ("mean", "mean over frames: D values"),
    ("max", "maximum over frames: D values"),
    ("std", "standard deviation over frames: D values"),
    ("meanstd", "mean then standard deviation: 2D values"),
    ("pct", "10th, 50th and 90th percentiles: 3D values"),
):
    POOLINGS.register(_method, PoolingEntry(_method, _stat_builder(_method), _description))


@register_pooling(
    "fisher",
    description="Fisher vector of a diagonal GMM fitted on train frames: 2KD values",
    fitted=True,
)
def _fisher(params: dict[str, Any], seed: int) -> Pooler:
    from raypipe.classify.encoding import FisherVectorEncoder

    return FisherVectorEncoder(int(params.get("components", 8)), seed=seed)


@register_pooling(
    "vlad", description="VLAD over k-means centres fitted on train frames: KD values", fitted=True
)
def _vlad(params: dict[str, Any], seed: int) -> Pooler:
    from raypipe.classify.encoding import VladEncoder

    return VladEncoder(int(params.get("clusters", 8)), seed=seed)


@register_pooling(
    "seq", description="window sequence with a mask, read by the sequence heads", sequence=True
)
def _seq(params: dict[str, Any], seed: int) -> Pooler:
    return WindowSequencePooler(
        int(params.get("window", 4)), int(params.get("hop", 2)), int(params.get("steps", 8))
    )


@register_pooling(
    "tfidf",
    description="TF-IDF of the transcript, vocabulary fitted on train transcripts",
    fitted=True,
    source="text",
)
def _tfidf(params: dict[str, Any], seed: int) -> Pooler:
    from raypipe.classify.tfidf import TfidfPooler

    return TfidfPooler(**dict(params.get("tfidf", {})))


def make_pooler(method: str, params: dict[str, Any] | None = None, seed: int = 0) -> Pooler:
    """An unfitted pooler of the registered pooling ``method`` (see :class:`PoolingEntry` for
    ``params``); an unknown name is an error listing the registered ones."""
    return POOLINGS.get(method).build(dict(params or {}), seed)


def is_sequence_feature_set(feature_set: str) -> bool:
    """Whether a feature set '<extractor>[.<pooling>]' holds window sequences (its pooling is
    registered with ``sequence=True``)."""
    _, _, pooling = feature_set.partition(".")
    return bool(pooling) and pooling in POOLINGS and POOLINGS.get(pooling).sequence
