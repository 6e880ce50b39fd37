"""Late fusion of multilabel and regression predictions (plain NumPy, no Ray).

Members of a multilabel task (per-label probabilities, e.g. action units) or a regression
task (values per target, e.g. valence and arousal) are aligned per media, or per frame where
their predictions are frame rows (``start_s`` seconds); each target's fused output is the
weighted mean of the members' outputs for it, members without an output for a row left out
and the weights renormalised over the present ones. The weights (one non-negative vector per
target) are searched on val to maximise that target's challenge score: CCC (regression) or
F1 at the best threshold of :data:`THRESHOLD_GRID` (multilabel, whose per-label thresholds are
then chosen on the fused val outputs by :func:`au_thresholds_on`). Candidates are scored in
batches with NumPy: every candidate's fused outputs are one matrix product.

Cost: scoring is linear in candidates x rows (about 1e-7 s per candidate-row for regression,
a few times that for multilabel, whose F1 is taken at every grid threshold). So that
frame-level members (hundreds of thousands of val frames) stay affordable, the random
candidates of each target are scored on a seeded subsample of at most
:attr:`TargetWeightSearch.max_rows` labelled rows (multilabel: positives and negatives drawn
in proportion, every label keeping at least one positive when it has one), and only the
coordinate ascent from the best of them scores every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from raypipe.fusion.frame_smoothing import THRESHOLD_GRID, au_thresholds_on

#: Tasks whose predictions carry a ``target`` column (see raypipe.store.run_folder).
TARGET_TASKS = ("multilabel", "regression")


@dataclass
class AlignedTargets:
    """Outputs of M members of one multilabel or regression task on the union of their rows.

    Attributes:
        models: (M,) member names.
        media_ids: (N,) media id of each row.
        splits: (N,) split of each row.
        start_s: (N,) start of each frame row, seconds; None for media-level rows.
        truth: (N, K) targets (multilabel 0/1), NaN where unlabelled.
        values: (M, N, K) member outputs, NaN where a member has no row of the media.
    """

    models: list[str]
    media_ids: np.ndarray
    splits: np.ndarray
    start_s: np.ndarray | None
    truth: np.ndarray
    values: np.ndarray

    def mask(self, split: str) -> np.ndarray:
        """Boolean (N,) mask of rows of ``split`` with at least one labelled target."""
        return (self.splits == split) & np.isfinite(self.truth).any(axis=1)


def _nearest(times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Index into sorted ``times`` of the entry nearest each of ``at`` (the earlier on a tie)."""
    after = np.clip(np.searchsorted(times, at), 0, len(times) - 1)
    before = np.clip(after - 1, 0, len(times) - 1)
    return np.where(np.abs(at - times[before]) <= np.abs(times[after] - at), before, after)


def align_targets(
    predictions: dict[str, pd.DataFrame], task: str, max_gap_s: float | None = None
) -> AlignedTargets:
    """Align the members' prediction tables (media_id, split, probs, target[, start_s]) of
    ``task`` ('multilabel': a target of -1 also marks an unlabelled unit; 'regression').

    Media-level tables are matched by media id. Frame-level tables (all with ``start_s``) are
    matched per frame: the rows are the union of the members' (media, start_s) rows, and a
    member's output at a row is that of its own row of the same media nearest in time (members
    of different modalities sample frames at different times), if that row lies at most
    ``max_gap_s`` seconds away (None: at any distance); a member without such a row of the
    media is missing there. A row's truth is that of the first member holding the row.
    """
    tables = list(predictions.values())
    framed = ["start_s" in t.columns for t in tables]
    if any(framed) and not all(framed):
        raise ValueError(
            "members mix frame-level (start_s) and media-level predictions; fuse members of "
            "one level"
        )
    widths = {len(t["probs"].iloc[0]) for t in tables if len(t)}
    if len(widths) > 1:
        raise ValueError(f"members have outputs of different widths {sorted(widths)}")
    width = widths.pop() if widths else 1
    keys = ["media_id", "start_s"] if all(framed) else ["media_id"]
    rows = pd.concat([t[[*keys, "split", "target"]] for t in tables], ignore_index=True)
    rows = rows.drop_duplicates(subset=keys, keep="first").sort_values(keys, kind="stable")
    rows = rows.reset_index(drop=True)
    truth = np.stack(rows["target"].to_numpy()).astype(np.float64).reshape(len(rows), width)
    if task == "multilabel":
        truth[truth < 0] = np.nan  # -1 also marks an unlabelled unit
    values = np.full((len(tables), len(rows), width), np.nan)
    by_media = rows.groupby("media_id", sort=False).indices
    for m, table in enumerate(tables):
        outputs = np.stack(table["probs"].to_numpy()).astype(np.float64) if len(table) else None
        for media_id, own in table.groupby("media_id", sort=False).indices.items():
            at = by_media[media_id]
            if all(framed):
                times = table["start_s"].to_numpy(np.float64)[own]
                order = np.argsort(times, kind="stable")
                wanted = rows["start_s"].to_numpy(np.float64)[at]
                nearest = _nearest(times[order], wanted)
                close = np.ones(len(at), bool)
                if max_gap_s is not None:
                    close = np.abs(times[order][nearest] - wanted) <= max_gap_s
                values[m, at[close]] = outputs[own[order][nearest[close]]]
            else:
                values[m, at] = outputs[own[0]]
    return AlignedTargets(
        list(predictions),
        rows["media_id"].to_numpy(dtype=object),
        rows["split"].to_numpy(dtype=object),
        rows["start_s"].to_numpy(np.float64) if all(framed) else None,
        truth,
        values,
    )


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(K, N) weighted means of (M, N) member outputs for (K, M) non-negative weight vectors;
    a member missing at a row (NaN) is left out and the weights renormalised over the present
    ones; where the present members' weights sum to 0, the plain mean of the present members;
    NaN where no member is present."""
    present = np.isfinite(values)
    filled = np.where(present, values, 0.0)
    numerator = weights @ filled
    denominator = weights @ present.astype(np.float64)
    count = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.where(count > 0, filled.sum(axis=0) / count, np.nan)
        weighted = numerator / np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, weighted, plain)


class TargetScorer:
    """Scores batches of weight vectors for one target on its labelled rows.

    Regression: CCC of the fused values with the truth (population moments, as
    :func:`raypipe.metrics.ccc`). Multilabel: the best F1 of the fused probabilities over
    ``grid`` thresholds (unit present where the probability >= the threshold; F1 0 where
    nothing is predicted or true), as the per-label thresholds are chosen on val afterwards.

    Args:
        values: (M, N) member outputs for the target, NaN where a member is missing.
        truth: (N,) truth, NaN where unlabelled (those rows are dropped).
        task: 'multilabel' or 'regression'.
        grid: thresholds tried (multilabel).
    """

    #: Fused outputs held at once (candidates x rows), bounding memory per batch.
    cells = 4_000_000

    def __init__(
        self,
        values: np.ndarray,
        truth: np.ndarray,
        task: str,
        grid: tuple[float, ...] = THRESHOLD_GRID,
    ) -> None:
        if task not in TARGET_TASKS:
            raise ValueError(f"task '{task}' is not one of {', '.join(TARGET_TASKS)}")
        labelled = np.isfinite(truth)
        self.values = np.asarray(values, np.float64)[:, labelled]
        self.truth = np.asarray(truth, np.float64)[labelled]
        self.task = task
        self.grid = np.asarray(grid, np.float64)
        self.n_rows = len(self.truth)
        self.rows_scored = 0  # candidate-rows scored so far (candidates x rows)

    def scores(self, weights: np.ndarray) -> np.ndarray:
        """(K,) score of each of the (K, M) weight vectors; -inf where undefined (fewer than
        two rows, constant outputs and truth, or all weights 0)."""
        weights = np.asarray(weights, np.float64)
        out = np.full(len(weights), -np.inf)
        if self.n_rows < 2:
            return out
        self.rows_scored += len(weights) * self.n_rows
        size = max(1, self.cells // self.n_rows)
        for start in range(0, len(weights), size):
            block = weights[start : start + size]
            fused = weighted_mean(self.values, block)
            scores = self._ccc(fused) if self.task == "regression" else self._best_f1(fused)
            scores[block.sum(axis=1) <= 0] = -np.inf
            out[start : start + size] = np.where(np.isfinite(scores), scores, -np.inf)
        return out

    def likelihood(self, weights: np.ndarray) -> np.ndarray:
        """(K,) mean binary log-likelihood of the truth under the fused probabilities (clipped
        to [1e-4, 1 - 1e-4]): how confidently a multilabel fusion separates the label, the
        tie-break among candidates of equal F1; 0 for regression."""
        weights = np.asarray(weights, np.float64)
        if self.task == "regression" or self.n_rows == 0:
            return np.zeros(len(weights))
        fused = np.clip(weighted_mean(self.values, weights), 1e-4, 1 - 1e-4)
        positive = self.truth > 0.5
        return np.where(positive, np.log(fused), np.log1p(-fused)).mean(axis=1)

    def _ccc(self, fused: np.ndarray) -> np.ndarray:
        y = self.truth
        centred = y - y.mean()
        mean = fused.mean(axis=1)
        covariance = (fused @ centred) / len(y)
        denominator = y.var() + fused.var(axis=1) + (y.mean() - mean) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, 2 * covariance / denominator, np.nan)

    def _best_f1(self, fused: np.ndarray) -> np.ndarray:
        positive = (self.truth > 0.5).astype(np.float64)
        best = np.zeros(len(fused))
        for threshold in self.grid:
            called = fused >= threshold
            hits = called @ positive
            denominator = called.sum(axis=1) + positive.sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                f1 = np.where(denominator > 0, 2 * hits / denominator, 0.0)
            best = np.maximum(best, f1)
        return best


def sample_rows(truth: np.ndarray, task: str, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` labelled rows of the (N,) ``truth`` (NaN:
    unlabelled), drawn without replacement with a seeded generator; every labelled row when
    there are no more than ``max_rows``. Multilabel: positives (truth > 0.5) and negatives in
    proportion to their counts, at least one positive when there is one."""
    labelled = np.flatnonzero(np.isfinite(truth))
    if len(labelled) <= max_rows:
        return labelled
    rng = np.random.default_rng(seed)
    if task != "multilabel":
        return np.sort(rng.choice(labelled, max_rows, replace=False))
    positive = labelled[truth[labelled] > 0.5]
    negative = labelled[truth[labelled] <= 0.5]
    n_positive = round(max_rows * len(positive) / len(labelled))
    n_positive = min(len(positive), max(n_positive, 1 if len(positive) else 0))
    n_negative = min(len(negative), max_rows - n_positive)
    chosen = np.concatenate(
        [
            rng.choice(positive, n_positive, replace=False),
            rng.choice(negative, n_negative, replace=False),
        ]
    )
    return np.sort(chosen)


def _flatness(weights: np.ndarray) -> np.ndarray:
    """(K,) spread (max - min) of each (K, M) weight vector scaled to sum to 1."""
    scaled = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    return np.ptp(scaled, axis=1)


def _best(scorer: TargetScorer, scores: np.ndarray, weights: np.ndarray) -> int:
    """The highest score; among equal scores the highest :meth:`TargetScorer.likelihood`
    (multilabel: F1 plateaus resolve to the most confident fusion), then the flattest weights,
    then the first."""
    top = np.flatnonzero(scores >= scores.max() - 1e-12)
    if len(top) > 1:
        likelihood = scorer.likelihood(weights[top])
        top = top[likelihood >= likelihood.max() - 1e-9]
    return int(top[np.argmin(_flatness(weights[top]))])


@dataclass
class TargetWeightedFusion:
    """A fitted multilabel/regression fusion.

    Attributes:
        task: 'multilabel' or 'regression'.
        weights: (M, K) non-negative weights, each target's column summing to 1.
        thresholds: (K,) per-label thresholds chosen on val (multilabel), else None.
    """

    task: str
    weights: np.ndarray
    thresholds: np.ndarray | None = None

    def predict(self, values: np.ndarray) -> np.ndarray:
        """(N, K) fused outputs of (M, N, K) member outputs (NaN: missing)."""
        return np.stack(
            [
                weighted_mean(values[:, :, k], self.weights[:, k][None])[0]
                for k in range(values.shape[2])
            ],
            axis=1,
        )

    def decide(self, values: np.ndarray) -> np.ndarray:
        """(N, K) decisions: 0/1 per label at the thresholds (multilabel), else the values."""
        fused = self.predict(values)
        if self.task == "multilabel":
            return (fused.astype(np.float32) >= self.thresholds).astype(np.float64)
        return fused

    def describe(self, members: list[str]) -> dict[str, Any]:
        """JSON-ready description: weights by member (one per target), thresholds."""
        weights = {m: np.round(w, 4).tolist() for m, w in zip(members, self.weights, strict=True)}
        described: dict[str, Any] = {"rule": "sum", "weights": weights}
        if self.thresholds is not None:
            described["thresholds"] = [float(t) for t in self.thresholds]
        return described


@dataclass
class TargetWeightSearch:
    """Per-target weight search (or equal weights) for multilabel and regression members.

    Attributes:
        task: 'multilabel' or 'regression'.
        equal: equal weights, nothing searched (the method 'mean'); else the method
            'weighted'.
        n_random: random weight vectors (uniform in [0, 1] per weight) scored per target,
            besides equal weights and every member alone.
        sweeps: sweeps of cyclic coordinate ascent refining the best candidate (each weight in
            turn takes the best of ``grid`` values in [0, 1]); stops when a sweep changes
            nothing.
        grid: values of one weight tried per sweep.
        seed: seed of the random candidates and of the rows they are scored on.
        max_rows: labelled val rows of a target the random candidates are scored on (a
            seeded subsample, see :func:`sample_rows`, when there are more); the coordinate
            ascent scores every row.
        last_scored: candidates scored by the last :meth:`fit`.
        last_scored_rows: candidate-rows (candidates x rows) scored by the last :meth:`fit`.
    """

    task: str
    equal: bool = False
    n_random: int = 2000
    sweeps: int = 3
    grid: int = 11
    seed: int = 0
    max_rows: int = 5000
    last_scored: int = field(default=0, init=False)
    last_scored_rows: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        """Suffix of the fused model's name."""
        return "mean" if self.equal else "weighted"

    def fit(self, values: np.ndarray, truth: np.ndarray) -> TargetWeightedFusion:
        """Fit on (M, N, K) member outputs and (N, K) truth (NaN: unlabelled) of val rows."""
        n_models, _, n_targets = values.shape
        weights = np.full((n_models, n_targets), 1.0 / n_models)
        scored = rows = 0
        if not self.equal:
            rng = np.random.default_rng(self.seed)
            pool = np.vstack(
                [np.ones(n_models), np.eye(n_models), rng.random((self.n_random, n_models))]
            )
            for k in range(n_targets):
                # Random candidates on a subsample of the rows, the refinement on all of them.
                sample = sample_rows(truth[:, k], self.task, self.max_rows, self.seed + k)
                sampled = TargetScorer(values[:, sample, k], truth[sample, k], self.task)
                scores = sampled.scores(pool)
                scored += len(pool)
                rows += sampled.rows_scored
                if not np.isfinite(scores).any():
                    continue  # nothing to learn from: equal weights
                start = pool[_best(sampled, scores, pool)]
                scorer = TargetScorer(values[:, :, k], truth[:, k], self.task)
                score = float(scorer.scores(start[None])[0])
                chosen, count = self._coordinate(scorer, start, score)
                scored += count + 1
                rows += scorer.rows_scored
                weights[:, k] = chosen / chosen.sum()
        self.last_scored = scored
        self.last_scored_rows = rows
        thresholds = None
        if self.task == "multilabel":
            fused = TargetWeightedFusion(self.task, weights).predict(values).astype(np.float32)
            table = pd.DataFrame({"target": list(truth), "probs": list(fused)})
            thresholds = au_thresholds_on(table)
        return TargetWeightedFusion(self.task, weights, thresholds)

    def _coordinate(
        self, scorer: TargetScorer, weights: np.ndarray, score: float
    ) -> tuple[np.ndarray, int]:
        """Cyclic coordinate ascent from ``weights``: each weight in turn takes the best of the
        grid values (scored in one batch) when that improves the score (or, at an equal score,
        the likelihood), until a sweep changes nothing. Returns the weights and the number of
        candidates scored."""
        values = np.linspace(0.0, 1.0, self.grid)
        current = weights / weights.max()
        likelihood = float(scorer.likelihood(current[None])[0])
        scored = 0
        for _ in range(self.sweeps):
            changed = False
            for j in range(len(current)):
                trials = np.repeat(current[None], len(values), axis=0)
                trials[:, j] = values
                scores = scorer.scores(trials)
                scored += len(trials)
                best = _best(scorer, scores, trials)
                if scores[best] < score - 1e-12:
                    continue
                trial_likelihood = float(scorer.likelihood(trials[best : best + 1])[0])
                if scores[best] > score + 1e-12 or trial_likelihood > likelihood + 1e-9:
                    current, score, likelihood = trials[best], float(scores[best]), trial_likelihood
                    changed = True
            if not changed:
                break
        return current, scored


def media_folds(media_ids: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """(N,) fold index per row, whole media per fold (a media's frames never straddle folds):
    a shuffled ``KFold`` over the distinct media ids."""
    ids, inverse = np.unique(np.asarray(media_ids, dtype=str), return_inverse=True)
    if len(ids) < n_folds:
        raise ValueError(f"{len(ids)} media cannot fill {n_folds} folds")
    folds = np.empty(len(ids), dtype=int)
    splitter = KFold(n_folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(ids)))):
        folds[held] = fold
    return folds[inverse.reshape(-1)]


def out_of_fold_decisions(
    method: TargetWeightSearch, values: np.ndarray, truth: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """(N, K) decisions (:meth:`TargetWeightedFusion.decide`) of each row from the method
    fitted without its fold: multilabel 0/1 at that fit's thresholds, regression values."""
    decided = np.zeros(truth.shape)
    for fold in np.unique(folds):
        held = folds == fold
        fitted = method.fit(values[:, ~held], truth[~held])
        decided[held] = fitted.decide(values[:, held])
    return decided


__all__ = [
    "TARGET_TASKS",
    "AlignedTargets",
    "TargetScorer",
    "TargetWeightSearch",
    "TargetWeightedFusion",
    "align_targets",
    "media_folds",
    "out_of_fold_decisions",
    "sample_rows",
    "weighted_mean",
]
