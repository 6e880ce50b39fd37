"""Coarse-to-fine cascade and temporal smoothing on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raypipe.fusion.methods.cascade import CascadeFusion, cascade, group_index
from raypipe.fusion.smoothing import media_predictions, smooth_probs

CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
NEGATIVE = {"Negative": ["Angry", "Disgust", "Fear", "Sad"]}


def test_group_index_and_its_errors() -> None:
    assert group_index(NEGATIVE, CLASSES).tolist() == [0, 0, 0, 1, 0, 2, 3]
    with pytest.raises(ValueError, match="'Anger', which is not a class"):
        group_index({"Negative": ["Anger"]}, CLASSES)
    with pytest.raises(ValueError, match="'Sad' is in more than one"):
        group_index({"a": ["Sad"], "b": ["Sad"]}, CLASSES)


def test_cascade_by_hand() -> None:
    groups = np.array([0, 0, 1])
    coarse = np.array([[0.5, 0.3, 0.2]])  # group 0 mass 0.8, group 1 mass 0.2
    fine = np.array([[0.1, 0.3, 0.6]])  # inside group 0: 0.25 / 0.75
    np.testing.assert_allclose(cascade(coarse, fine, groups), [[0.2, 0.6, 0.2]], atol=1e-6)
    # A fine model with no mass in a group shares the group's mass equally; NaN is uniform.
    np.testing.assert_allclose(
        cascade(coarse, np.array([[0.0, 0.0, 1.0]]), groups), [[0.4, 0.4, 0.2]], atol=1e-6
    )
    nan = np.full((1, 3), np.nan)
    np.testing.assert_allclose(cascade(nan, fine, groups), [[1 / 6, 0.5, 1 / 3]], atol=1e-6)


def _coarse_and_fine(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model 0 knows the group (its mass inside Negative is spread evenly); model 1 knows the
    class inside Negative but always leans to Negative as a group; model 2 is noise."""
    rng = np.random.default_rng(seed)
    groups = group_index(NEGATIVE, CLASSES)
    labels = np.arange(n) % 7
    coarse = np.full((n, 7), 0.02)
    fine = np.full((n, 7), 0.02)
    for i, y in enumerate(labels):
        coarse[i, groups == groups[y]] += 0.8 / (groups == groups[y]).sum()
        fine[i, groups == 0] += 0.3
        fine[i, y] += 0.3 if groups[y] == 0 else 0.0
    probs = np.stack([coarse, fine, rng.dirichlet(np.ones(7), n)])
    return probs / probs.sum(axis=2, keepdims=True), labels, groups


def test_cascade_picks_coarse_and_fine_models_and_recovers_every_class() -> None:
    probs, labels, groups = _coarse_and_fine(70, 0)
    for m in range(3):  # no member alone gets every class
        assert np.mean(probs[m].argmax(1) == labels) < 0.8
    fitted = CascadeFusion(groups).fit(probs, labels)
    assert (fitted.coarse, fitted.fine) == (0, 1)
    test_probs, test_labels, _ = _coarse_and_fine(35, 1)
    assert np.mean(fitted.predict(test_probs).argmax(1) == test_labels) == 1.0
    described = fitted.describe(["face", "voice", "noise"])
    assert described["coarse"] == "face" and described["fine"] == "voice"
    # Named members are kept as given.
    assert CascadeFusion(groups, coarse=2, fine=0).fit(probs, labels).coarse == 2


def test_moving_mean_by_hand_and_order_kept() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    times = np.array([0.0, 1.0, 2.0, 3.0])
    smoothed = smooth_probs(probs, times, window_s=2.0, method="mean")  # +-1 s
    np.testing.assert_allclose(smoothed[:, 0], [0.5, 2 / 3, 2 / 3, 1.0], atol=1e-6)
    shuffled = [2, 0, 3, 1]
    again = smooth_probs(probs[shuffled], times[shuffled], 2.0, "mean")
    np.testing.assert_allclose(again, smoothed[shuffled], atol=1e-6)
    np.testing.assert_array_equal(smooth_probs(probs, times, 0.0), probs)


def test_median_removes_an_isolated_flip_and_ema_by_hand() -> None:
    probs = np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]] + [[0.9, 0.1]] * 3)
    times = np.arange(7) * 0.2
    assert smooth_probs(probs, times, 0.5, "median").argmax(1).tolist() == [0] * 7
    ema = smooth_probs(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.0, 1.0]), 1.0, "ema")
    keep = np.exp(-1.0)
    np.testing.assert_allclose(ema[1], [keep, 1 - keep], atol=1e-6)
    with pytest.raises(ValueError, match="unknown smoothing 'gauss'"):
        smooth_probs(probs, times, 1.0, "gauss")


def test_media_predictions_decide_once_per_media() -> None:
    rows = [("a", t * 0.2, [0.9, 0.1]) for t in range(5)] + [("b", 0.0, [0.2, 0.8])]
    rows[2] = ("a", 0.4, [0.0, 1.0])  # a flip in the middle of media a
    frames = pd.DataFrame(rows, columns=["media_id", "start_s", "probs"])
    frames["split"], frames["label"] = "val", 0
    mean = media_predictions(frames, window_s=0.5, method="median", decision="mean")
    assert mean["media_id"].tolist() == ["a", "b"]
    np.testing.assert_allclose(mean["probs"][0], [0.9, 0.1], atol=1e-6)
    vote = media_predictions(frames, window_s=0.0, decision="vote")
    np.testing.assert_allclose(vote["probs"][0], [0.8, 0.2], atol=1e-6)
    assert vote["label"].tolist() == [0, 0] and vote["split"].tolist() == ["val", "val"]
