"""Vectorised search of late-fusion weights: many weight vectors scored at once (NumPy, no Ray).

A candidate is a weight vector, one weight per model ``(M,)`` or per model and class ``(M, C)``.
:class:`CandidateScorer` scores a batch of ``K`` candidates in a few matrix products: the fused
score of every (class, media, candidate) comes from one ``(C*N, M) @ (M, K)`` product (per-model
weights) or one batched ``(C, N, M) @ (C, M, K)`` product (per-class weights), a running arg-max
over classes gives the predictions, and per-class hit and prediction counts give accuracy,
macro-F1 and UAR without a Python loop over candidates. Its scores equal
``classification_scores(labels, weighted_fusion(...).argmax(1))`` (tests compare them), so the
search and the stored fusion agree.

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
from raypipe.fusion.rules import PROB_FLOOR, RULES, weighted_fusion

log = logging.getLogger(__name__)

METRIC_NAMES = ("macro_f1", "accuracy", "uar")


class CandidateScorer:
    """Scores batches of fusion weights on fixed predictions and labels.

    Args:
        probs: (M, N, C) probabilities of M models on N labelled media; NaN where a model has
            no prediction for a media.
        labels: (N,) class indices in ``0..C-1``.
        rule: 'sum' (weighted mean of probabilities) or 'product' (weighted mean of logs).
        metric: 'macro_f1', 'accuracy' or 'uar'; macro averages run over the classes present in
            ``labels``, as :func:`raypipe.metrics.classification_scores` does.
    """

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
        self._all_present = bool(present.all())
        # Class-major layouts: per-model weights use one (C*N, M) @ (M, K) product, per-class
        # weights one batched (C, N, M) @ (C, M, K) product.
        self._flat = np.ascontiguousarray(
            values.transpose(2, 1, 0).reshape(-1, self.n_models), dtype=np.float32
        )  # (C*N, M)
        self._values_t32 = np.ascontiguousarray(values.transpose(2, 1, 0), dtype=np.float32)
        self._present_t32 = np.ascontiguousarray(present.T, dtype=np.float32)  # (N, M)
        self._true = np.bincount(self.labels, minlength=self.n_classes).astype(np.float64)
        self._scored = self._true > 0
        self._onehot = np.eye(self.n_classes, dtype=np.float32)[self.labels]  # (N, C)

    def scores(self, weights: np.ndarray, chunk: int = 512) -> np.ndarray:
        """(K,) metric of each candidate; ``weights`` is (K, M) or (K, M, C), non-negative."""
        weights = np.asarray(weights, dtype=np.float64)
        out = np.empty(len(weights), dtype=np.float64)
        for start in range(0, len(weights), chunk):
            out[start : start + chunk] = self._score_chunk(weights[start : start + chunk])
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

    def predictions(self, weights: np.ndarray) -> np.ndarray:
        """(N, K) predicted class of every media under every candidate (media-major, so the
        arg-max over classes runs on contiguous blocks)."""
        weights = np.asarray(weights, dtype=np.float64)
        k = len(weights)
        if weights.ndim == 2:
            # One weight per model: the normaliser (sum of present weights) is the same for
            # every class of a media, so it cannot change the arg-max and is skipped. All
            # classes in one (C*N, M) @ (M, K) product.
            fused = (self._flat @ weights.T.astype(np.float32)).reshape(self.n_classes, -1, k)
            return _argmax_classes(list(fused))
        empty = 1.0 / self.n_classes if self.rule == "sum" else 0.0
        if self._all_present:
            # Every model scored every media: the normaliser of class c is the candidate's sum
            # of class-c weights, so normalised weights give the fused scores directly, all
            # classes in one batched (C, N, M) @ (C, M, K) product.
            totals = weights.sum(axis=1)  # (K, C)
            with np.errstate(invalid="ignore", divide="ignore"):
                scaled = np.where(totals[:, None, :] > 0, weights / totals[:, None, :], 0.0)
            fused = np.matmul(self._values_t32, scaled.transpose(2, 1, 0).astype(np.float32))
            zero = totals.T <= 0  # (C, K)
            if zero.any():
                for c, j in zip(*np.nonzero(zero), strict=True):
                    fused[c, :, j] = empty
            return _argmax_classes(list(fused))
        # Some media miss a model: the normaliser (sum of the present models' class-c
        # weights) varies by media, so it is computed, in the same batched form.
        w32 = weights.transpose(2, 1, 0).astype(np.float32)  # (C, M, K)
        fused = np.matmul(self._values_t32, w32)  # (C, N, K)
        totals = np.matmul(self._present_t32, w32)  # (C, N, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(fused, totals, out=fused)
        none = totals <= 0
        if none.any():
            fused[none] = empty
        return _argmax_classes(list(fused))

    def _score_chunk(self, weights: np.ndarray) -> np.ndarray:
        predicted = self.predictions(weights)  # (N, K)
        k, n_classes = len(weights), self.n_classes
        offsets = (np.arange(k) * n_classes)[None, :]
        counted = np.bincount((predicted + offsets).ravel(), minlength=k * n_classes)
        counted = counted.reshape(k, n_classes).astype(np.float64)
        # Hits per (candidate, true class) as one product with the labels' one-hot matrix.
        hits = (predicted == self.labels[:, None]).astype(np.float32)
        tp = (hits.T @ self._onehot).astype(np.float64)
        return metric_from_counts(tp, counted, self._true, self._scored, self.metric)


def _argmax_classes(columns: list[np.ndarray]) -> np.ndarray:
    """Arg-max over a list of C same-shape arrays, the first maximum winning (as ``np.argmax``)."""
    best = np.zeros(columns[0].shape, dtype=np.int64)
    best_value = columns[0].copy()
    better = np.empty(best.shape, dtype=bool)
    for c, value in enumerate(columns[1:], start=1):
        np.greater(value, best_value, out=better)
        np.copyto(best, c, where=better)
        np.maximum(best_value, value, out=best_value)
    return best


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


@register_fusion(
    "weighted",
    uses_tune=True,
    description="one non-negative weight per model and a rule (sum or product)",
)
def build_weighted(context: FusionContext) -> WeightSearch:
    return _search(context, per_class=False)


@register_fusion(
    "weighted_class", description="one weight per model and class (a model trusted per class)"
)
def build_weighted_class(context: FusionContext) -> WeightSearch:
    return _search(context, per_class=True)
