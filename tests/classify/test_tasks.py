"""Multilabel and regression tasks on data whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.classify.feature_matrix import FeatureMatrix
from raypipe.classify.fit import fit_and_score, outputs
from raypipe.classify.targets import MultiLabelModel, choose_thresholds
from raypipe.metrics import ccc, multilabel_scores


def test_ccc_known_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(y, y) == pytest.approx(1.0)
    assert ccc(y, -y + 5) == pytest.approx(-1.0)
    # Shifted by 1: cov = var = 1.25, so CCC = 2.5 / (1.25 + 1.25 + 1) = 5/7.
    assert ccc(y, y + 1) == pytest.approx(5 / 7)
    # Halved around the mean: cov = 0.625, var_pred = 0.3125 -> 1.25 / 1.5625 = 0.8.
    assert ccc(y, (y - 2.5) / 2 + 2.5) == pytest.approx(0.8)


def test_thresholds_chosen_per_label_on_validation() -> None:
    # Label 0: positives score 0.30-0.38, negatives 0.10-0.18 -> any threshold in (0.18, 0.30]
    # separates them; 0.5 calls nothing positive. Label 1 is clean around 0.5 already.
    truth = np.array([[1, 1], [1, 0], [1, 1], [0, 0], [0, 1], [0, 0]])
    probs = np.array([[0.30, 0.9], [0.34, 0.2], [0.38, 0.8], [0.10, 0.1], [0.14, 0.7], [0.18, 0.3]])
    thresholds = choose_thresholds(truth, probs)
    assert 0.18 < thresholds[0] <= 0.30
    assert 0.3 < thresholds[1] <= 0.7
    scores = multilabel_scores(truth, probs, thresholds, ["au1", "au2"])
    assert scores["f1_au1"] == 1.0 and scores["mean_f1"] == 1.0
    assert scores["mean_f1_at_half"] == pytest.approx(0.5)  # au1 scores 0 at 0.5


def _multilabel_matrix(seed: int = 0) -> FeatureMatrix:
    """Label k is on exactly when feature k > 1 (rarely: about 16% of media), features are
    standard normal: a logistic model is right by construction, and the rare positives push
    its probabilities below 0.5 near the boundary, which thresholds on val correct."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(900, 3)).astype(np.float32)
    y = (x[:, :2] > 1.0).astype(np.float32)
    split = np.array(["train", "val", "test"] * 300, dtype=object)
    ids = np.array([f"a{i}" for i in range(900)], dtype=object)
    return FeatureMatrix(
        "aus", "visual", ids, x, y, split, task="multilabel", target_names=["au1", "au2"]
    )


@pytest.mark.parametrize("name", ["logreg", "mlp"])
def test_multilabel_action_units(name: str) -> None:
    matrix = _multilabel_matrix()
    params = {"C": 100.0} if name == "logreg" else {"epochs": 60, "lr": 0.01, "hidden": 32}
    model, scores = fit_and_score(matrix, {"classifier": name, "params": params}, 7, balance="none")
    assert isinstance(model, MultiLabelModel) and model.thresholds.shape == (2,)
    assert scores["val_mean_f1"] >= 0.85, scores
    assert scores["val_mean_f1"] >= scores["val_mean_f1_at_half"]
    _, x_test, y_test = matrix.subset("test")
    probs = outputs(model, "multilabel", x_test, 7)
    assert probs.shape == (len(x_test), 2) and ((probs >= 0) & (probs <= 1)).all()
    test = multilabel_scores(y_test, probs, model.thresholds)
    assert test["mean_f1"] >= 0.8, test


def _affect_matrix(seed: int = 0, missing: int = 0) -> FeatureMatrix:
    """valence = 0.5 x0 - 0.3 x1 and arousal = tanh(x2) exactly; ``missing`` rows unlabelled."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, size=(300, 4)).astype(np.float32)
    y = np.stack([0.5 * x[:, 0] - 0.3 * x[:, 1], np.tanh(x[:, 2])], axis=1).astype(np.float32)
    y[:missing] = np.nan
    split = np.array(["train", "val", "test"] * 100, dtype=object)
    ids = np.array([f"v{i}" for i in range(300)], dtype=object)
    return FeatureMatrix(
        "va", "audio", ids, x, y, split, task="regression", target_names=["valence", "arousal"]
    )


@pytest.mark.parametrize(
    ("name", "valence", "arousal"),
    [("logreg", 0.999, 0.9), ("rf", 0.9, 0.9), ("lightgbm", 0.9, 0.9), ("mlp", 0.95, 0.95)],
)
def test_valence_arousal_regression(name: str, valence: float, arousal: float) -> None:
    matrix = _affect_matrix(missing=30)
    assert matrix.labelled().sum() == 270
    params = {"epochs": 80, "lr": 0.01, "hidden": 64} if name == "mlp" else {"C": 100.0}
    model, scores = fit_and_score(matrix, {"classifier": name, "params": params}, 7)
    assert scores["val_ccc_valence"] >= valence, scores
    assert scores["val_ccc_arousal"] >= arousal, scores
    assert scores["val_ccc"] == pytest.approx(
        (scores["val_ccc_valence"] + scores["val_ccc_arousal"]) / 2
    )
    _, x_test, y_test = matrix.subset("test")
    values = outputs(model, "regression", x_test, 7)
    assert values.shape == (len(x_test), 2)
    assert ccc(y_test[:, 0], values[:, 0]) >= valence - 0.05
