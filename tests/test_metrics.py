"""The challenge metrics on hand-computed cases, each chosen so that an error of averaging,
weighting, thresholds' order, masking or sign changes the answer."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.metrics import au_f1, au_mean_f1, ccc, expression_macro_f1, va_ccc


def test_expression_macro_f1_over_frames() -> None:
    # Frames: truth 0 0 1 1 2 (the last frame, -1, is unlabelled), prediction 0 1 1 1 0.
    # Class 0: TP 1, FP 1, FN 1 -> F1 1/2; class 1: TP 2, FP 1 -> P 2/3, R 1, F1 4/5;
    # class 2: TP 0 -> F1 0. Macro: (1/2 + 4/5 + 0) / 3 = 13/30 (accuracy would be 3/5,
    # frequency weighting (2*0.5 + 2*0.8 + 0) / 5 = 13/25).
    truth = np.array([0, 0, 1, 1, 2, -1])
    predicted = np.array([0, 1, 1, 1, 0, 2])
    assert expression_macro_f1(truth, predicted) == pytest.approx(13 / 30)


def test_expression_macro_f1_counts_a_class_predicted_but_never_true() -> None:
    # Class 0 F1 1, class 1 P 1 R 1/2 -> 2/3, class 2 (never true, predicted once) 0:
    # (1 + 2/3 + 0) / 3 = 5/9; over the true classes only it would be 5/6.
    assert expression_macro_f1([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(5 / 9)
    # Majority-class predictions: class 0 F1 6/7, class 1 0 -> 3/7 (weighted: 9/14).
    assert expression_macro_f1([0, 0, 0, 1], [0, 0, 0, 0]) == pytest.approx(3 / 7)


def test_au_mean_f1_thresholds_each_unit_and_skips_unlabelled_cells() -> None:
    truth = np.array([[1, 0], [1, 1], [0, 1], [0, np.nan]])
    probs = np.array([[0.6, 0.2], [0.4, 0.9], [0.3, 0.7], [0.2, 0.8]])
    # AU0 at 0.35: predicted 1 1 0 0 = truth -> F1 1. AU1 at 0.5 on its three labelled
    # frames: 0 1 1 = truth -> F1 1 (counting the unlabelled frame as 0 would add a false
    # positive: 4/5).
    np.testing.assert_allclose(au_f1(truth, probs, [0.35, 0.5]), [1.0, 1.0])
    assert au_mean_f1(truth, probs, [0.35, 0.5]) == pytest.approx(1.0)
    # The thresholds swapped (AU0 at 0.5: P 1, R 1/2 -> 2/3; AU1 at 0.35: 1): 5/6.
    assert au_mean_f1(truth, probs, [0.5, 0.35]) == pytest.approx(5 / 6)
    # One threshold for all units: 0.5 -> (2/3 + 1) / 2.
    assert au_mean_f1(truth, probs) == pytest.approx(5 / 6)
    # -1 marks an unlabelled cell as the annotation files do.
    minus = np.where(np.isnan(truth), -1, truth)
    assert au_mean_f1(minus, probs, [0.35, 0.5]) == pytest.approx(1.0)


def test_va_ccc_per_target_over_labelled_frames() -> None:
    truth = np.array([[-1.0, 0.0], [0.0, 0.5], [1.0, 0.5], [np.nan, 1.0]])
    predicted = np.array([[-1.0, 0.5], [0.0, 1.0], [1.0, 1.0], [5.0, 1.5]])
    scores = va_ccc(truth, predicted)
    # Valence: the three labelled frames are exact -> 1 (the unlabelled one is left out).
    assert scores["ccc_valence"] == pytest.approx(1.0)
    # Arousal shifted by 0.5: var 1/8 each, cov 1/8 -> 2/8 / (1/8 + 1/8 + 1/4) = 1/2
    # (Pearson would say 1; sample (1/(N-1)) moments 4/7).
    assert scores["ccc_arousal"] == pytest.approx(0.5)
    assert scores["ccc"] == pytest.approx(0.75)
    # A prediction of the opposite sign scores -1, not 1.
    assert ccc(np.array([0.1, 0.2, 0.3]), np.array([-0.1, -0.2, -0.3])) < 0
    assert ccc(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
