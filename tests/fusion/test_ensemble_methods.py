"""Greedy ensemble selection, stacking and cross-validation on predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.fusion.cross_validation import out_of_fold, stratified_folds
from raypipe.fusion.methods.greedy import GreedySelection
from raypipe.fusion.methods.stacking import StackingFusion, stacking_features
from tests.fusion.synthetic import complementary


def test_greedy_selection_keeps_the_two_complementary_models() -> None:
    probs, labels = complementary(seed=3)
    fitted = GreedySelection(rounds=10, metric="accuracy").fit(probs, labels)
    assert fitted.weights[2] == 0.0  # the noise model is never picked
    assert fitted.weights[0] > 0 and fitted.weights[1] > 0
    assert np.isclose(fitted.weights.sum(), 1.0)
    test_probs, test_labels = complementary(seed=4)
    assert np.mean(fitted.predict(test_probs).argmax(1) == test_labels) == 1.0


def test_greedy_selection_of_one_perfect_model_is_that_model() -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 4
    perfect = np.eye(4)[labels] * 0.7 + 0.075
    probs = np.stack([rng.dirichlet(np.ones(4), 60), perfect, rng.dirichlet(np.ones(4), 60)])
    fitted = GreedySelection(rounds=5).fit(probs, labels)
    np.testing.assert_array_equal(fitted.weights, [0.0, 1.0, 0.0])


def _relabelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A model that is always right up to a fixed relabelling (it says c+1 for class c), and a
    noise model: no weighting can repair it, a meta-classifier can."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 5
    shifted = np.eye(5)[(labels + 1) % 5] * 0.8 + 0.04
    return np.stack([shifted, rng.dirichlet(np.ones(5), n)]), labels


@pytest.mark.parametrize("meta", ["logreg", "svm"])
def test_stacking_learns_a_relabelling(meta: str) -> None:
    probs, labels = _relabelled(100, 0)
    fitted = StackingFusion(meta=meta, folds=3).fit(probs, labels)
    test_probs, test_labels = _relabelled(50, 1)
    fused = fitted.predict(test_probs)
    assert fused.shape == (50, 5) and np.allclose(fused.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(fused.argmax(1) == test_labels) == 1.0
    assert fitted.describe(["a", "b"])["C"] in (0.01, 0.1, 1.0, 10.0)


def test_stacking_handles_missing_models_and_absent_classes() -> None:
    probs, labels = _relabelled(40, 2)
    probs[1, :10] = np.nan
    features = stacking_features(probs)
    assert features.shape == (40, 2 * 5 + 2) and not np.isnan(features).any()
    np.testing.assert_array_equal(features[:10, -1], 0.0)
    keep = labels != 4  # class 4 never seen when fitting: its column stays 0
    fused = StackingFusion().fit(probs[:, keep], labels[keep]).predict(probs)
    np.testing.assert_array_equal(fused[:, 4], 0.0)


def test_stratified_folds_deal_every_class_across_folds() -> None:
    labels = np.repeat(np.arange(3), [6, 3, 9])
    folds = stratified_folds(labels, 3, seed=1)
    for label in range(3):
        counts = np.bincount(folds[labels == label], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.bincount(folds).tolist() == [6, 6, 6]
    # Same seed, same folds (scikit-learn's StratifiedKFold, shuffled by the seed).
    np.testing.assert_array_equal(stratified_folds(labels, 3, seed=1), folds)
    # Two media per class and 3 folds: classes are dealt on, every fold gets media.
    assert sorted(np.bincount(stratified_folds(np.repeat(np.arange(7), 2), 3))) == [4, 5, 5]
    # No class as large as the number of folds: unstratified shuffled folds, still all used.
    assert sorted(np.bincount(stratified_folds(np.arange(7), 3))) == [2, 2, 3]
    with pytest.raises(ValueError, match="at least 2 folds"):
        stratified_folds(labels, 1)


class _MajorityOfTraining:
    """A fusion that predicts the most frequent class of the media it was fitted on."""

    name = "majority"

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> _MajorityOfTraining:
        self.label = int(np.bincount(labels).argmax())
        return self

    def predict(self, probs: np.ndarray) -> np.ndarray:
        return np.tile(np.eye(probs.shape[2])[self.label], (probs.shape[1], 1))


def test_out_of_fold_predictions_never_see_their_own_fold() -> None:
    # Fold 0 holds every class-2 media: fitted without it, the majority is class 1; fitted
    # with it (for folds 1 and 2), class 2.
    labels = np.array([2, 2, 2, 2, 0, 0, 1, 1, 1])
    folds = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    probs = np.zeros((1, 9, 3))
    fused = out_of_fold(_MajorityOfTraining(), probs, labels, folds)
    assert fused.argmax(1).tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 2]
