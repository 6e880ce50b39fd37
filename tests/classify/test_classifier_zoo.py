"""Every classifier of the zoo on data whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.classify.classifiers import CLASSIFIERS, build_classifier
from raypipe.classify.feature_matrix import FeatureMatrix
from raypipe.classify.fit import fit_and_score, outputs, oversample
from raypipe.classify.pooling import WindowSequencePooler
from tests.classify.synthetic import synthetic_matrix


@pytest.mark.parametrize(
    "name", [n for n, e in CLASSIFIERS.items() if not e.epochs and not e.sequence] + ["mlp"]
)
def test_separable_classes_are_learnt(name: str) -> None:
    matrix = synthetic_matrix(dim=4, separation=6.0)
    params = {"epochs": 40, "lr": 0.01} if name == "mlp" else {}
    model, scores = fit_and_score(matrix, {"classifier": name, "params": params}, 7)
    assert scores["val_macro_f1"] >= 0.9, scores
    _, x_test, y_test = matrix.subset("test")
    probs = outputs(model, "classification", x_test, 7)
    assert probs.shape == (len(x_test), 7)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs[:, 3:] == 0).all()  # classes never seen in training get zero probability
    assert (probs.argmax(axis=1) == y_test).mean() >= 0.9


def _ramps(n_per_class: int = 30, seed: int = 0) -> FeatureMatrix:
    """Class 0 rises over time, class 1 falls: identical frame sets, opposite order, so only a
    model that reads the order can tell them apart."""
    rng = np.random.default_rng(seed)
    pooler = WindowSequencePooler(window=2, hop=2, steps=6)
    rows, labels = [], []
    for cls in (0, 1):
        for _ in range(n_per_class):
            ramp = np.linspace(-1, 1, 12)[:: 1 if cls == 0 else -1]
            frames = np.stack([ramp, rng.normal(size=12)], axis=1).astype(np.float32)
            frames[:, 0] += 0.1 * rng.normal(size=12)
            rows.append(pooler.encode(frames))
            labels.append(cls)
    split = np.array((["train"] * 2 + ["val"]) * (2 * n_per_class // 3), dtype=object)
    ids = np.array([f"r{i}" for i in range(len(rows))], dtype=object)
    return FeatureMatrix("ramps.seq", "visual", ids, np.stack(rows), np.array(labels), split)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_heads_read_temporal_order(name: str) -> None:
    matrix = _ramps()
    params = {"epochs": 30, "lr": 0.01, "hidden": 16, "steps": 6}
    _, scores = fit_and_score(matrix, {"classifier": name, "params": params}, 2)
    assert scores["val_accuracy"] >= 0.95, scores
    # The same frames averaged over time carry no class information.
    mean_pooled = matrix.x[:, 6:].reshape(len(matrix.x), 6, 2).mean(axis=1)
    flat = FeatureMatrix(
        "ramps.mean", "visual", matrix.media_ids, mean_pooled, matrix.y, matrix.split
    )
    _, chance = fit_and_score(flat, {"classifier": "logreg", "params": {}}, 2)
    assert chance["val_accuracy"] <= 0.75


@pytest.mark.parametrize("name", ["attention", "netvlad"])
def test_pooling_heads_learn_shifted_sequences(name: str) -> None:
    rng = np.random.default_rng(3)
    pooler = WindowSequencePooler(window=2, hop=2, steps=4)
    y = np.repeat([0, 1], 30)
    x = np.stack([pooler.encode(rng.normal(size=(8, 3)) + 2.0 * c) for c in y])
    split = np.array(["train", "train", "val"] * 20, dtype=object)
    ids = np.array([f"s{i}" for i in range(60)], dtype=object)
    matrix = FeatureMatrix("s.seq", "audio", ids, x.astype(np.float32), y, split)
    params = {"epochs": 20, "lr": 0.01, "hidden": 16, "steps": 4}
    _, scores = fit_and_score(matrix, {"classifier": name, "params": params}, 2)
    assert scores["val_accuracy"] >= 0.95, scores


def test_oversampling_equalises_class_counts() -> None:
    x = np.arange(12, dtype=np.float32)[:, None]
    y = np.array([0] * 8 + [1] * 3 + [2])
    xs, ys = oversample(x, y, seed=0)
    assert np.bincount(ys).tolist() == [8, 8, 8]
    assert set(xs[ys == 2, 0].tolist()) == {11.0}  # copies of the one class-2 row
    assert (xs[:12] == x).all()


def test_balancing_recovers_a_minority_class() -> None:
    rng = np.random.default_rng(0)
    # 40 majority rows vs 4 minority rows that overlap it: unweighted logistic regression
    # predicts the majority everywhere; class weights or oversampling recover the minority.
    y = np.array([0] * 40 + [1] * 4 + [0] * 20 + [1] * 20)
    x = (rng.normal(size=(len(y), 1)) + 1.2 * y[:, None]).astype(np.float32)
    split = np.array(["train"] * 44 + ["val"] * 40, dtype=object)
    ids = np.array([str(i) for i in range(len(y))], dtype=object)
    matrix = FeatureMatrix("imbalanced", "audio", ids, x, y, split)
    spec = {"classifier": "logreg", "params": {"C": 0.05}}
    uar = {
        b: fit_and_score(matrix, spec, 2, balance=b)[1]["val_uar"]
        for b in ("none", "class_weight", "oversample")
    }
    assert uar["none"] == pytest.approx(0.5)
    assert uar["class_weight"] > 0.6 and uar["oversample"] > 0.6


def test_unknown_classifier_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: " + ", ".join(CLASSIFIERS)) as info:
        build_classifier("svm", {})
    assert "unknown classifier 'svm' (registry CLASSIFIERS)" in str(info.value)
