"""Multilabel and regression fusion (raypipe/fusion/targets.py) on hand-computed cases: the
weights per target, the renormalisation over present members, per-label thresholds, frame
alignment by nearest time, and the vectorised scores against the reference metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raypipe.fusion.targets import (
    TargetScorer,
    TargetWeightSearch,
    align_targets,
    media_folds,
    out_of_fold_decisions,
    sample_rows,
    weighted_mean,
)
from raypipe.metrics import au_f1, au_mean_f1, ccc


def _series(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, n)


def test_weighted_mean_renormalises_over_present_members() -> None:
    values = np.array([[1.0, np.nan, 2.0, np.nan], [3.0, 5.0, 4.0, np.nan]])
    weights = np.array([[1.0, 3.0], [0.0, 1.0], [1.0, 0.0]])
    fused = weighted_mean(values, weights)
    # Row 0: (1*1 + 3*3) / 4; row 1: member 0 missing, member 1 alone; row 3: no member.
    assert fused[0, :3] == pytest.approx([2.5, 5.0, 3.5])
    assert fused[1, :3] == pytest.approx([3.0, 5.0, 4.0])
    # Only member 0's weight is nonzero, and member 0 is missing in row 1: the plain mean of
    # the present members (member 1 alone) instead of a division by 0.
    assert fused[2, :3] == pytest.approx([1.0, 5.0, 2.0])
    assert np.isnan(fused[:, 3]).all()


def test_regression_weights_go_to_the_member_equal_to_the_truth_per_target() -> None:
    # Target 0: member A is the truth and B its negation; target 1 the other way round.
    truth = np.stack([_series(60, 1), _series(60, 2)], axis=1)
    a = np.stack([truth[:, 0], -truth[:, 1]], axis=1)
    b = np.stack([-truth[:, 0], truth[:, 1]], axis=1)
    values = np.stack([a, b])
    val, test = np.arange(60) < 40, np.arange(60) >= 40
    fitted = TargetWeightSearch("regression", n_random=200).fit(values[:, val], truth[val])
    assert fitted.weights == pytest.approx(np.array([[1.0, 0.0], [0.0, 1.0]]))
    fused = fitted.predict(values[:, test])
    assert ccc(truth[test, 0], fused[:, 0]) == pytest.approx(1.0)
    assert ccc(truth[test, 1], fused[:, 1]) == pytest.approx(1.0)
    assert fitted.thresholds is None
    assert fitted.describe(["a", "b"])["weights"] == {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    equal = TargetWeightSearch("regression", equal=True).fit(values[:, val], truth[val])
    assert equal.weights == pytest.approx(np.full((2, 2), 0.5))


def test_regression_search_prefers_a_mix_when_the_members_err_independently() -> None:
    rng = np.random.default_rng(3)
    truth = _series(400, 4)[:, None]
    values = np.stack([truth + rng.normal(0, 0.5, truth.shape) for _ in range(2)])
    values[1] += 0.3 * rng.normal(0, 1, truth.shape)  # member 1 noisier
    fitted = TargetWeightSearch("regression", n_random=300).fit(values, truth)
    w = fitted.weights[:, 0]
    assert 0.5 < w[0] < 0.9 and w.sum() == pytest.approx(1.0)  # more on the better member
    fused = fitted.predict(values)[:, 0]
    assert ccc(truth[:, 0], fused) > max(ccc(truth[:, 0], v[:, 0]) for v in values)


def test_multilabel_weights_and_thresholds_per_label() -> None:
    # Label 0: member A is right with probabilities 0.3 (present) / 0.1 (absent), so only a
    # threshold in (0.1, 0.3] is perfect; member B is inverted there. Label 1: the reverse.
    truth = np.tile(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float), (5, 1))
    a = np.stack([np.where(truth[:, 0] > 0, 0.3, 0.1), 1 - truth[:, 1]], axis=1)
    b = np.stack([1 - truth[:, 0], np.where(truth[:, 1] > 0, 0.9, 0.6)], axis=1)
    values = np.stack([a, b])
    fitted = TargetWeightSearch("multilabel", n_random=200).fit(values, truth)
    assert fitted.weights == pytest.approx(np.array([[1.0, 0.0], [0.0, 1.0]]))
    # The first grid value with the best F1: 0.15 for label 0, 0.65 for label 1 (not 0.5).
    assert fitted.thresholds == pytest.approx([0.15, 0.65])
    fused = fitted.predict(values)
    assert au_mean_f1(truth, fused, fitted.thresholds) == pytest.approx(1.0)
    assert au_mean_f1(truth, fused, 0.5) < 0.7  # a threshold of 0.5 would be wrong
    assert fitted.decide(values) == pytest.approx(truth)


def test_the_vectorised_scores_equal_the_reference_metrics() -> None:
    rng = np.random.default_rng(7)
    values = rng.uniform(0, 1, (3, 50))
    values[1, :10] = np.nan  # member 1 missing on some rows
    truth = np.where(rng.uniform(size=50) < 0.4, 1.0, 0.0)
    truth[45:] = np.nan  # unlabelled rows are left out
    weights = rng.uniform(0, 1, (20, 3))
    labelled = np.isfinite(truth)
    fused = weighted_mean(values[:, labelled], weights)
    regression = TargetScorer(values, truth, "regression").scores(weights)
    expected = [ccc(truth[labelled], f) for f in fused]
    assert regression == pytest.approx(expected)
    multilabel = TargetScorer(values, truth, "multilabel").scores(weights)
    grid = np.round(0.05 * np.arange(1, 20), 2)
    best = [max(au_f1(truth[labelled, None], f[:, None], t)[0] for t in grid) for f in fused]
    assert multilabel == pytest.approx(best)


def test_frames_are_aligned_by_nearest_time_within_each_media() -> None:
    first = pd.DataFrame(
        {
            "media_id": ["v1", "v1", "v1", "v2"],
            "split": ["val"] * 4,
            "start_s": [0.0, 0.1, 0.2, 0.0],
            "probs": [[1.0], [2.0], [3.0], [4.0]],
            "target": [[0.5], [0.6], [0.7], [-0.8]],
        }
    )
    second = pd.DataFrame(
        {
            "media_id": ["v1", "v1"],
            "split": ["val"] * 2,
            "start_s": [0.14, 0.04],  # unsorted on purpose
            "probs": [[20.0], [10.0]],
            "target": [[0.65], [0.55]],
        }
    )
    aligned = align_targets({"a": first, "b": second}, "regression")
    assert list(aligned.media_ids) == ["v1"] * 5 + ["v2"]
    assert aligned.start_s == pytest.approx([0.0, 0.04, 0.1, 0.14, 0.2, 0.0])
    assert aligned.values[0, :, 0] == pytest.approx([1, 1, 2, 2, 3, 4])
    # 0.1 is nearer 0.14 than 0.04; v2 has no row of member b.
    assert aligned.values[1, :5, 0] == pytest.approx([10, 10, 20, 20, 20])
    assert np.isnan(aligned.values[1, 5, 0])
    # At most 0.05 s away: b's nearest row to 0.2 is 0.14, so b is missing there; the rest
    # lie 0.04 s or less from their nearest row.
    near = align_targets({"a": first, "b": second}, "regression", max_gap_s=0.05)
    assert near.values[0, :, 0] == pytest.approx([1, 1, 2, 2, 3, 4])
    assert near.values[1, :4, 0] == pytest.approx([10, 10, 20, 20])
    assert np.isnan(near.values[1, 4:, 0]).all()
    # A negative value is a valence, but in a multilabel table -1 marks an unlabelled unit.
    assert aligned.truth[:, 0] == pytest.approx([0.5, 0.55, 0.6, 0.65, 0.7, -0.8])
    assert np.isnan(align_targets({"a": first, "b": second}, "multilabel").truth[5, 0])
    media_level = first.drop(columns="start_s")
    with pytest.raises(ValueError, match="mix frame-level"):
        align_targets({"a": media_level, "b": second}, "regression")


def test_folds_keep_each_media_whole_and_cross_validation_holds_each_fold_out() -> None:
    ids = np.repeat([f"m{i}" for i in range(6)], 4)
    folds = media_folds(ids, 3, seed=0)
    for media in np.unique(ids):
        assert len(set(folds[ids == media])) == 1
    assert sorted(np.bincount(folds)) == [8, 8, 8]
    # Member a is the truth on folds 1 and 2 but its negation on fold 0, so a fit without
    # fold 0 trusts a, and fold 0's out-of-fold values are a's (the negated truth).
    truth = _series(24, 9)[:, None]
    a = np.where((folds == 0)[:, None], -truth, truth)
    b = np.zeros_like(truth) + _series(24, 10)[:, None]
    method = TargetWeightSearch("regression", n_random=50)
    decided = out_of_fold_decisions(method, np.stack([a, b]), truth, folds)
    assert decided[folds == 0, 0] == pytest.approx(-truth[folds == 0, 0])
    with pytest.raises(ValueError, match="2 media cannot fill 3 folds"):
        media_folds(np.array(["x", "y"]), 3)


def test_many_frames_cost_a_bounded_number_of_scored_candidate_rows() -> None:
    """40,000 labelled val frames of two action units: the random candidates are scored on a
    subsample of at most max_rows rows per label (every label keeping positives), and only the
    coordinate ascent scores every row, so the candidate-rows scored stay within
    targets x (candidates x max_rows + (1 + sweeps x members x grid) x rows)."""
    rng = np.random.default_rng(5)
    n = 40_000
    truth = np.stack([rng.uniform(size=n) < 0.3, rng.uniform(size=n) < 0.002], axis=1)
    truth = truth.astype(np.float64)
    truth[::9, 0] = np.nan  # unlabelled frames of AU1
    good = np.clip(truth + rng.normal(0, 0.3, truth.shape), 0, 1)
    noise = rng.uniform(size=truth.shape)
    values = np.stack([np.nan_to_num(good), noise])  # (M=2, N, K=2)
    search = TargetWeightSearch("multilabel", n_random=400, sweeps=3, grid=11, max_rows=2000)
    fitted = search.fit(values, truth)
    pool = 400 + 1 + 2  # random, equal, each member alone
    bound = 2 * (pool * 2000 + (1 + 3 * 2 * 11) * n)
    assert search.last_scored_rows <= bound
    assert search.last_scored_rows < 2 * pool * n / 3  # scoring every row at random: 3x more
    assert (fitted.weights[0] > 0.7).all()  # the informative member, found on the subsample

    for k in range(2):
        sample = sample_rows(truth[:, k], "multilabel", 2000, seed=k)
        labelled = np.isfinite(truth[:, k])
        assert len(sample) == 2000 and labelled[sample].all()
        assert len(np.unique(sample)) == 2000
        share = (truth[labelled, k] > 0.5).mean()
        positives = int((truth[sample, k] > 0.5).sum())
        assert positives >= 1 and abs(positives - 2000 * share) <= 1
    rare = np.full(n, 0.0)
    rare[7] = 1.0  # one positive in 40,000 rows is kept
    assert 7 in sample_rows(rare, "multilabel", 100)
    every = np.flatnonzero(np.isfinite(truth[:, 0]))
    assert np.array_equal(sample_rows(truth[:, 0], "multilabel", 10**6), every)
