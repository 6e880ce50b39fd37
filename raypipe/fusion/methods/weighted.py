"""Vectorised search of late-fusion weights: many weight vectors scored at once (no Ray).

A candidate is a weight vector, one weight per model ``(M,)`` or per model and class ``(M, C)``.
:class:`CandidateScorer` scores blocks of candidates with a compiled float32 kernel
(:mod:`raypipe.fusion.counting`): weights normalised per presence pattern of the media, one
weighted sum per (media, class, candidate), a running arg-max over classes, and per-class hit
and prediction counts from which accuracy, macro-F1 and UAR follow, with no Python per
candidate. Pairs the float32 sums cannot decide are settled by the reference fusion, so its
scores equal ``classification_scores(labels, weighted_fusion(...).argmax(1))`` exactly (tests
compare them) and the search and the stored fusion agree.

:class:`WeightSearch` draws random candidates, then refines the best one by cyclic coordinate
ascent (each weight in turn set to every value of a grid, the grid scored in one batch), for
each fusion rule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raypipe.fusion.methods.registry import FusionContext, register_fusion
from raypipe.fusion.rules import PROB_FLOOR, RULES, fuse_per_media, weighted_fusion

log = logging.getLogger(__name__)

METRIC_NAMES = ("macro_f1", "accuracy", "uar")


class CandidateScorer:
    """Scores batches of fusion weights on fixed predictions and labels.

    Media are grouped by presence pattern (which members scored them); per pattern, each
    candidate's weights are normalised per class over the present members up front, so the
    fused score of every (media, class, candidate) is one float32 weighted sum and no division
    runs per media. The compiled kernel :func:`raypipe.fusion.counting.count_block` fuses a
    block of :attr:`block` candidates, takes the arg-max over classes and keeps only counts
    (predictions and hits per class), from which accuracy, macro-F1 and UAR follow. A
    (media, candidate) pair whose two best float32 scores are closer than the kernel's error
    bound is settled by the reference fusion (:func:`weighted_fusion` in float64, rounded to
    float32, first maximum wins), so the scores equal the reference's exactly, ties included.

    Args:
        probs: (M, N, C) probabilities of M models on N labelled media; NaN where a model has
            no prediction for a media.
        labels: (N,) class indices in ``0..C-1``.
        rule: 'sum' (weighted mean of probabilities) or 'product' (weighted mean of logs).
        metric: 'macro_f1', 'accuracy' or 'uar'; macro averages run over the classes present in
            ``labels``, as :func:`raypipe.metrics.classification_scores` does.
    """

    #: Candidates per kernel call (the vectorised innermost axis of the kernel). 512 measured
    #: 10-15 % faster than 256 at 10 models x 2,000 media (docs/benchmarks.md).
    block = 512

    #: Undecided pairs settled per call of the reference fusion (bounds its memory: every pair
    #: of a block can be undecided, e.g. on media that no model scored).
    settle_batch = 65536

    def __init__(
        self, probs: np.ndarray, labels: np.ndarray, rule: str = "sum", metric: str = "macro_f1"
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown fusion rule '{rule}'; allowed: {', '.join(RULES)}")
        if metric not in METRIC_NAMES:
            raise ValueError(f"unknown metric '{metric}'; allowed: {', '.join(METRIC_NAMES)}")
        probs = np.asarray(probs, dtype=np.float64)
        self._probs = probs
        self.n_models, self.n_media, self.n_classes = probs.shape
        self.rule = rule
        self.metric = metric
        self.labels = np.asarray(labels, dtype=np.int64)
        present = ~np.isnan(probs[..., 0])  # (M, N)
        if rule == "product":
            values = np.log(np.clip(np.nan_to_num(probs, nan=1.0), PROB_FLOOR, 1.0))
        else:
            values = np.nan_to_num(probs, nan=0.0)
        values = values * present[..., None]
        # (N, C, M') for the kernel: members padded with zeros to a multiple of 4, at least 8.
        self._padded = max(8, self.n_models + -self.n_models % 4) - self.n_models
        padded = np.pad(values.transpose(1, 2, 0), ((0, 0), (0, 0), (0, self._padded)))
        self._values = np.ascontiguousarray(padded, dtype=np.float32)
        patterns, index = np.unique(present.T, axis=0, return_inverse=True)
        self._patterns = patterns.astype(np.float64)  # (P, M): 1 where the member is present
        self._pattern = np.ascontiguousarray(index.reshape(-1), dtype=np.int64)  # (N,)
        # What a class scores when its weights over the present members sum to 0 (as
        # weighted_fusion: uniform for 'sum', a mean log of 0 for 'product').
        self._empty = 1.0 / self.n_classes if rule == "sum" else 0.0
        # Bound on the float32 kernel's error: a fused score is a convex combination of M
        # values of magnitude <= scale, with the weights and values rounded to float32; pairs
        # closer than twice the bound plus the rounding of the reference's float32 output are
        # settled by the reference.
        scale = max(float(np.abs(values).max(initial=0.0)), 1.0)
        self._tol = float(4 * (self.n_models + 4) * np.finfo(np.float32).eps * scale)
        self._true = np.bincount(self.labels, minlength=self.n_classes).astype(np.float64)
        self._scored = self._true > 0
        self.settled = 0  # (media, candidate) pairs settled by the reference so far
        self._close = np.empty((3, 0), dtype=np.int64)  # undecided pairs, grown on demand

    def scores(self, weights: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """(K,) metric of each candidate; ``weights`` is (K, M) or (K, M, C), non-negative;
        ``chunk`` candidates per kernel call (default :attr:`block`)."""
        weights = np.asarray(weights, dtype=np.float64)
        size = chunk or self.block
        out = np.empty(len(weights), dtype=np.float64)
        for start in range(0, len(weights), size):
            out[start : start + size] = self._score_block(weights[start : start + size])
        return out

    def log_likelihood(self, weights: np.ndarray) -> np.ndarray:
        """(K,) mean log fused probability of the true class (rows renormalised), computed with
        the reference fusion one candidate at a time: a tie-breaker for a few candidates."""
        out = np.empty(len(weights))
        for i, w in enumerate(np.asarray(weights, dtype=np.float64)):
            fused = weighted_fusion(self._probs, w, self.rule).astype(np.float64)
            fused /= np.maximum(fused.sum(axis=1, keepdims=True), 1e-12)
            true = fused[np.arange(self.n_media), self.labels]
            out[i] = np.log(np.maximum(true, PROB_FLOOR)).mean()
        return out

    def best(self, scores: np.ndarray, weights: np.ndarray, max_ties: int = 256) -> int:
        """Index of the best candidate: highest score; among equal scores the highest
        :meth:`log_likelihood` (the most confident correct fusion; at most ``max_ties`` of the
        flattest tied candidates are compared), then the flattest weights."""
        top = np.flatnonzero(scores >= scores.max() - 1e-12)
        if len(top) > max_ties:
            top = top[np.argsort(flatness(weights[top]), kind="stable")[:max_ties]]
        if len(top) == 1:
            return int(top[0])
        likelihood = self.log_likelihood(weights[top])
        top = top[likelihood >= likelihood.max() - 1e-9]
        return int(top[np.argmin(flatness(weights[top]))])

    def _score_block(self, weights: np.ndarray) -> np.ndarray:
        from raypipe.fusion.counting import count_block, normalise_weights  # compiled on first use

        k, n_media, n_classes = len(weights), self.n_media, self.n_classes
        per_class = weights if weights.ndim == 3 else np.repeat(weights[:, :, None], n_classes, 2)
        kernel_weights, bias = normalise_weights(
            np.ascontiguousarray(per_class.transpose(2, 1, 0)),
            self._patterns,
            self.n_models + self._padded,
            self._empty,
        )
        predicted = np.zeros((n_classes, k), dtype=np.int32)
        hits = np.zeros((n_classes, k), dtype=np.int32)
        if self._close.shape[1] < n_media * k:  # every pair may be undecided; reused per block
            self._close = np.empty((3, n_media * k), dtype=np.int64)
        close = self._close
        n_close = count_block(
            self._values,
            self._pattern,
            self.labels,
            kernel_weights,
            bias,
            self._tol,
            predicted,
            hits,
            close[0],
            close[1],
            close[2],
        )
        if n_close:
            self._settle(weights, predicted, hits, close[:, :n_close])
        return metric_from_counts(
            hits.T.astype(np.float64),
            predicted.T.astype(np.float64),
            self._true,
            self._scored,
            self.metric,
        )

    def _settle(
        self, weights: np.ndarray, predicted: np.ndarray, hits: np.ndarray, close: np.ndarray
    ) -> None:
        """Replace the kernel's predictions of undecided (media, candidate) pairs, given as
        rows media, candidate, kernel class of ``close``, by the reference fusion's, in the
        (C, K) counts."""
        media, candidate, guessed = close
        reference = np.empty_like(guessed)
        for start in range(0, len(media), self.settle_batch):
            part = slice(start, start + self.settle_batch)
            chosen = weights[candidate[part]]  # (X, M) or (X, M, C): each pair's candidate
            per_media = chosen[:, :, None] if chosen.ndim == 2 else chosen
            probs = self._probs[:, media[part]]
            fused = fuse_per_media(probs, per_media.transpose(1, 0, 2), self.rule)
            reference[part] = fused.argmax(axis=1)
        truth = self.labels[media]
        np.subtract.at(predicted, (guessed, candidate), 1)
        np.add.at(predicted, (reference, candidate), 1)
        np.add.at(hits, (truth, candidate), (reference == truth).astype(np.int32))
        np.subtract.at(hits, (truth, candidate), (guessed == truth).astype(np.int32))
        self.settled += len(media)


def metric_from_counts(
    tp: np.ndarray, predicted: np.ndarray, true: np.ndarray, scored: np.ndarray, metric: str
) -> np.ndarray:
    """(K,) metric from (K, C) true positives and prediction counts and (C,) true counts.

    ``scored`` marks the classes that enter macro averages (those present in the labels).
    """
    if metric == "accuracy":
        return tp.sum(axis=1) / max(true.sum(), 1.0)
    if metric == "uar":
        return (tp[:, scored] / true[scored]).mean(axis=1)
    f1 = 2.0 * tp[:, scored] / (predicted[:, scored] + true[scored])
    return f1.mean(axis=1)


def flatness(weights: np.ndarray) -> np.ndarray:
    """(K,) spread (max - min) of each candidate's weights after scaling them to sum to 1 per
    class; ties in score go to the flattest candidate, the least tuned and least overfitted."""
    weights = np.asarray(weights, dtype=np.float64)
    flat = weights if weights.ndim == 3 else weights[:, :, None]
    normalised = flat / np.maximum(flat.sum(axis=1, keepdims=True), 1e-12)
    return np.ptp(normalised, axis=1).max(axis=1)


def fixed_candidates(n_models: int, n_classes: int, per_class: bool) -> np.ndarray:
    """Equal weights and each model alone: the fusion is never worse than its best member on
    the data it is fitted on."""
    base = np.vstack([np.ones(n_models), np.eye(n_models)])
    return np.repeat(base[:, :, None], n_classes, axis=2) if per_class else base


@dataclass
class WeightedFusion:
    """A fitted weighted fusion: (M,) or (M, C) weights, each column summing to 1, and a rule."""

    weights: np.ndarray
    rule: str

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """(N, C) fused probabilities of (M, N, C) member probabilities, rows summing to 1
        (per-class weights normalise class by class, so rows are rescaled; the arg-max is
        unchanged)."""
        fused = weighted_fusion(probs, self.weights, self.rule)
        return fused / np.maximum(fused.sum(axis=1, keepdims=True), 1e-12)

    def describe(self, members: list[str]) -> dict[str, Any]:
        """JSON-ready description: rule and weights by member (lists per class when per-class)."""
        weights = {m: np.round(w, 4).tolist() for m, w in zip(members, self.weights, strict=True)}
        return {"rule": self.rule, "weights": weights}


def normalise(weights: np.ndarray) -> np.ndarray:
    """Scale (M,) or (M, C) weights so that each class's weights sum to 1."""
    weights = np.asarray(weights, dtype=np.float64)
    return weights / np.maximum(weights.sum(axis=0, keepdims=True), 1e-12)


@dataclass
class WeightSearch:
    """Random then coordinate search of fusion weights, both rules, scored vectorised.

    Attributes:
        per_class: one weight per model and class (M, C) instead of per model (M,).
        rules: fusion rules searched; the best candidate of any rule wins.
        metric: metric maximised.
        n_random: random candidates drawn (uniform in [0, 1] per weight).
        sweeps: sweeps of cyclic coordinate ascent after the random stage (each weight in turn
            takes the best value of ``grid``, the others fixed); stops when a sweep changes
            nothing.
        grid: values of one weight tried per sweep (in [0, 1]).
        extra: (K, M) or (K, M, C) candidates scored besides the random ones (e.g. Ray Tune's).
        seed: seed of the random stage.
    """

    per_class: bool = False
    rules: tuple[str, ...] = RULES
    metric: str = "macro_f1"
    n_random: int = 20000
    sweeps: int = 3
    grid: int = 11
    extra: np.ndarray | None = None
    seed: int = 0
    last_scored: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        """Fused model name of this method."""
        return "weighted_class" if self.per_class else "weighted"

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> WeightedFusion:
        """Search weights on (M, N, C) probabilities of labelled media; return the best.

        Candidates are compared by the metric, then by the mean log-probability of the true
        class (so plateaus of the metric resolve to the most confident fusion), then by
        flatness.
        """
        n_models, _, n_classes = probs.shape
        rng = np.random.default_rng(self.seed)
        shape = (n_models, n_classes) if self.per_class else (n_models,)
        pool = [
            fixed_candidates(n_models, n_classes, self.per_class),
            rng.random((self.n_random, *shape)),
        ]
        if self.extra is not None and len(self.extra):
            pool.append(np.asarray(self.extra, dtype=np.float64))
        candidates = np.concatenate(pool)
        best: tuple[float, float, float, str, np.ndarray] | None = None
        scored = 0
        for rule in self.rules:
            scorer = CandidateScorer(probs, labels, rule, self.metric)
            scores = scorer.scores(candidates)
            scored += len(candidates)
            index = scorer.best(scores, candidates)
            weights = candidates[index]
            weights, score, likelihood, count = self._coordinate(scorer, weights, scores[index])
            scored += count
            key = (score, likelihood, -float(flatness(weights[None])[0]))
            if best is None or key > best[:3]:
                best = (*key, rule, weights)
        assert best is not None
        self.last_scored = scored
        return WeightedFusion(normalise(best[4]), best[3])

    def _coordinate(
        self, scorer: CandidateScorer, weights: np.ndarray, score: float
    ) -> tuple[np.ndarray, float, float, int]:
        """Cyclic coordinate ascent: each weight in turn takes the best grid value (the grid
        scored in one batch), until a sweep changes nothing. Returns the weights, their score
        and log-likelihood, and the number of candidates scored."""
        values = np.linspace(0.0, 1.0, self.grid)
        scale = weights.max() if weights.max() > 0 else 1.0
        current = (weights / scale).reshape(-1)
        likelihood = float(scorer.log_likelihood(current.reshape(1, *weights.shape))[0])
        scored = 0
        for _ in range(self.sweeps):
            changed = False
            for j in range(current.size):
                trials = np.repeat(current[None, :], len(values), axis=0)
                trials[:, j] = values
                shaped = trials.reshape(-1, *weights.shape)
                scores = scorer.scores(shaped)
                scored += len(trials)
                index = scorer.best(scores, shaped)
                if scores[index] < score - 1e-12:
                    continue
                trial_likelihood = float(scorer.log_likelihood(shaped[index : index + 1])[0])
                if scores[index] > score + 1e-12 or trial_likelihood > likelihood + 1e-9:
                    current, score, likelihood = (
                        trials[index],
                        float(scores[index]),
                        trial_likelihood,
                    )
                    changed = True
            if not changed:
                break
        return current.reshape(weights.shape), score, likelihood, scored


# -- registration ----------------------------------------------------------------------
def _search(context: FusionContext, per_class: bool) -> WeightSearch:
    config = context.config
    return WeightSearch(
        per_class=per_class,
        rules=tuple(config.rules),
        metric=config.metric,
        n_random=config.random_candidates,
        sweeps=config.coordinate_sweeps,
        extra=None if per_class else context.tune_candidates,
        seed=config.seed,
    )


def build_target_weights(context: FusionContext) -> Any:
    """The per-target weight search of multilabel and regression members."""
    from raypipe.fusion.targets import TargetWeightSearch

    config = context.config
    return TargetWeightSearch(
        context.task,
        n_random=config.random_candidates,
        sweeps=config.coordinate_sweeps,
        seed=config.seed,
    )


@register_fusion(
    "weighted",
    uses_tune=True,
    description="one non-negative weight per model and a rule (sum or product)",
    build_targets=build_target_weights,
)
def build_weighted(context: FusionContext) -> WeightSearch:
    return _search(context, per_class=False)


@register_fusion(
    "weighted_class", description="one weight per model and class (a model trusted per class)"
)
def build_weighted_class(context: FusionContext) -> WeightSearch:
    return _search(context, per_class=True)
