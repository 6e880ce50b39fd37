"""Every classifier kind (per task), pooler and fitted fusion survives the run folder codec
(skops, trusted types only) with identical outputs."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.classify.classifiers import CLASSIFIERS, SEQUENCE_CLASSIFIERS
from raypipe.classify.feature_matrix import FeatureMatrix
from raypipe.classify.fit import fit_and_score, outputs
from raypipe.classify.pooling import WindowSequencePooler, make_pooler
from raypipe.classify.tfidf import TfidfPooler
from raypipe.fusion.methods.cascade import CascadeFusion
from raypipe.fusion.methods.greedy import GreedySelection
from raypipe.fusion.methods.stacking import StackingFusion
from raypipe.fusion.methods.weighted import WeightSearch
from raypipe.store import artifacts
from tests.fusion.synthetic import complementary

FAST = {
    "rf": {"n_estimators": 5},
    "lightgbm": {"n_estimators": 5},
    **{name: {"epochs": 2, "hidden": 8} for name in ("mlp", *SEQUENCE_CLASSIFIERS)},
}
STEPS = 3


def _matrix(task: str, sequence: bool, seed: int = 0) -> FeatureMatrix:
    rng = np.random.default_rng(seed)
    n = 48
    if sequence:
        pooler = WindowSequencePooler(window=2, hop=2, steps=STEPS)
        x = np.stack([pooler.encode(rng.normal(size=(rng.integers(2, 8), 3))) for _ in range(n)])
    else:
        x = rng.normal(size=(n, 4)).astype(np.float32)
    split = np.array(["train", "train", "val", "test"] * (n // 4), dtype=object)
    ids = np.array([f"m{i}" for i in range(n)], dtype=object)
    names: list[str] = []
    if task == "classification":
        y = (x[:, -1] > 0).astype(int) + (x[:, -2] > 0.5)
    elif task == "multilabel":
        y = (x[:, -2:] > 0).astype(np.float32)
        names = ["au1", "au2"]
    else:
        y = x[:, -2:].astype(np.float64)
        names = ["valence", "arousal"]
    name = "set.seq" if sequence else "set.mean"
    return FeatureMatrix(name, "visual", ids, x, y, split, task=task, target_names=names)


@pytest.mark.parametrize("task", ["classification", "multilabel", "regression"])
@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_classifier_round_trip_gives_identical_outputs(classifier: str, task: str) -> None:
    sequence = classifier in SEQUENCE_CLASSIFIERS
    matrix = _matrix(task, sequence)
    params = dict(FAST.get(classifier, {}))
    if sequence:
        params["steps"] = STEPS
    model, _ = fit_and_score(matrix, {"classifier": classifier, "params": params}, 3)
    record = {"pipeline": model, "spec": {"classifier": classifier}, "task": task, "pooler": None}
    data = artifacts.dumps(record)
    assert artifacts.untrusted_types(data) == []
    loaded = artifacts.loads(data)
    assert type(loaded["pipeline"]) is type(model)
    np.testing.assert_array_equal(
        outputs(loaded["pipeline"], task, matrix.x, 3), outputs(model, task, matrix.x, 3)
    )


def test_neural_head_state_holds_numpy_arrays_only() -> None:
    matrix = _matrix("classification", sequence=False)
    model, _ = fit_and_score(matrix, {"classifier": "mlp", "params": FAST["mlp"]}, 3)
    state = model.named_steps["model"].__getstate__()
    assert "module_" not in state
    assert all(isinstance(v, np.ndarray) for v in state["module_state_"].values())


@pytest.mark.parametrize("method", ["mean", "pct", "fisher", "vlad", "seq"])
def test_pooler_round_trip(method: str) -> None:
    rng = np.random.default_rng(1)
    media = [rng.normal(size=(int(rng.integers(3, 12)), 3)) for _ in range(10)]
    pooler = make_pooler(method, {"components": 2, "clusters": 2, "steps": 3}).fit(media)
    loaded = artifacts.loads(artifacts.dumps(pooler))
    for frames in media:
        np.testing.assert_array_equal(loaded.encode(frames), pooler.encode(frames))


def test_tfidf_pooler_round_trip() -> None:
    texts = ["I am so happy today", "this is sad and bad", "happy happy joy", "angry words"]
    pooler = TfidfPooler(ngram_range=[1, 2], sublinear_tf=True).fit(texts)
    loaded = artifacts.loads(artifacts.dumps(pooler))
    for text in [*texts, "unseen happy words", ""]:
        np.testing.assert_array_equal(loaded.encode(text), pooler.encode(text))


FUSIONS = {
    "weighted": lambda: WeightSearch(n_random=50, sweeps=1),
    "weighted_class": lambda: WeightSearch(per_class=True, n_random=50, sweeps=1),
    "greedy": lambda: GreedySelection(rounds=4),
    "stacking_logreg": lambda: StackingFusion("logreg", c_grid=(0.1, 1.0)),
    "stacking_svm": lambda: StackingFusion("svm", c_grid=(0.1, 1.0)),
    "cascade": lambda: CascadeFusion(np.array([0, 0, 1, 1, 2, 2])),
}


@pytest.mark.parametrize("kind", sorted(FUSIONS))
def test_fitted_fusion_round_trip(kind: str) -> None:
    probs, labels = complementary(n=60, seed=2)
    probs[1, :5] = np.nan  # a member without predictions for some media
    fitted = FUSIONS[kind]().fit(probs, labels)
    data = artifacts.dumps(fitted)
    assert artifacts.untrusted_types(data) == []
    loaded = artifacts.loads(data)
    test_probs, _ = complementary(n=30, seed=5)
    np.testing.assert_array_equal(loaded.predict(test_probs), fitted.predict(test_probs))


def test_stacking_of_one_class_round_trip() -> None:
    probs, _ = complementary(n=30, seed=2)
    fitted = StackingFusion().fit(probs, np.zeros(30, int))
    loaded = artifacts.loads(artifacts.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict(probs), fitted.predict(probs))


def test_every_trusted_type_names_a_class() -> None:
    import importlib

    missing = []
    for entry in artifacts.TRUSTED_TYPES:
        module, _, attribute = entry.rpartition(".")
        try:
            getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            missing.append(entry)
    assert missing == [], f"TRUSTED_TYPES entries that moved or vanished: {missing}"


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_a_model_saved_between_epochs_loads_as_fitted(task: str) -> None:
    """A search trial checkpoints its torch head between epochs, while scikit-learn's fit-time
    callback context hangs on the pipeline; it is left out of the file, not out of the model."""
    matrix = _matrix(task, sequence=False)
    saved: list[tuple[bytes, np.ndarray]] = []

    def on_epoch(epoch: int, model: object, scores: dict) -> None:
        saved.append((artifacts.dumps(model), outputs(model, task, matrix.x, 3)))

    params = {"epochs": 2, "hidden": 8}
    fit_and_score(matrix, {"classifier": "mlp", "params": params}, 3, on_epoch=on_epoch)
    assert len(saved) == 2
    for data, expected in saved:
        assert artifacts.untrusted_types(data) == []
        np.testing.assert_array_equal(outputs(artifacts.loads(data), task, matrix.x, 3), expected)


def test_a_head_whose_saved_sizes_do_not_match_its_weights_is_refused() -> None:
    """Sizes in a saved head come from the file: a crafted one asking for a huge network is
    refused before anything is allocated."""
    from raypipe.classify.neural_heads import NeuralHeadEstimator

    rng = np.random.default_rng(0)
    head = NeuralHeadEstimator(kind="mlp", hidden=8, epochs=1).fit(
        rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 2
    )
    state = head.__getstate__()
    restored = NeuralHeadEstimator.__new__(NeuralHeadEstimator)
    restored.__setstate__(dict(state))
    assert restored.module_ is not None
    state["hidden"] = 10**9  # about 4 GB per layer if it were built
    with pytest.raises(ValueError, match="do not match"):
        NeuralHeadEstimator.__new__(NeuralHeadEstimator).__setstate__(state)
    crafted = dict(state, hidden=8, module_shape_=(4, 10**9))
    with pytest.raises(ValueError, match="do not match"):
        NeuralHeadEstimator.__new__(NeuralHeadEstimator).__setstate__(crafted)
