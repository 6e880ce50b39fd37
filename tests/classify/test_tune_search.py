"""`raypipe tune-classifiers` on synthetic stores with the session's local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from raypipe.classify.feature_matrix import model_features
from raypipe.config import FeatureSetConfig, FuseConfig, TuneClassifiersConfig
from raypipe.errors import ConfigError
from raypipe.labels import label_space
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.report.writer import metrics_table
from raypipe.store.feature_store import FeatureStore
from raypipe.store.run_folder import RunFolder
from tests.classify.synthetic import make_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETS = ("face_sim", "voice_sim", "words_sim")


@pytest.fixture(scope="module")
def frame_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Three frame-level feature sets (3 classes, 36 media) and a targets table."""
    root = tmp_path_factory.mktemp("classify")
    store, targets = make_store(root / "store", all_frames=True)
    targets.to_csv(root / "targets.csv", index=False)
    return store.uri, root / "targets.csv"


def test_three_feature_sets_by_three_poolings_by_four_classifiers(
    ray_local: None, frame_store: tuple[str, Path], tmp_path: Path
) -> None:
    store, _ = frame_store
    config = TuneClassifiersConfig(
        store=store,
        run=tmp_path / "run",
        feature_sets=[
            FeatureSetConfig(extractor=s, pooling=["mean", "pct", "fisher"]) for s in SETS
        ],
        classifiers=["logreg", "linsvc", "rf", "lightgbm"],
        logreg_c=[1.0],
        lightgbm_num_leaves=[4],
        lightgbm_n_estimators=20,
        param_grid={
            "linsvc": {"C": [1.0]},
            "rf": {"n_estimators": [50], "max_depth": [None], "min_samples_leaf": [1]},
        },
        pooling_components=2,
    )
    best = run_tune_classifiers(config)
    run = RunFolder(tmp_path / "run")
    trials = run.trials()
    assert len(trials) == 3 * 3 * 4 and trials["trial_id"].is_unique
    assert set(trials["feature_set"]) == {
        f"{s}.{p}" for s in SETS for p in ("mean", "pct", "fisher")
    }
    assert len(best) == 36 and set(best["modality"]) == {"visual", "audio", "text"}
    # Every finished trial's predictions on every split, class probabilities summing to 1.
    for trial_id in trials["trial_id"]:
        predictions = run.trial_predictions(trial_id)
        assert set(predictions["split"]) == {"train", "val", "test"} and len(predictions) == 36
        probs = np.stack(predictions["probs"])
        assert probs.shape == (36, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    face = trials[trials["feature_set"] == "face_sim.mean"].set_index("classifier")
    assert face.loc["logreg", "val_macro_f1"] == 1.0  # class centres 2.0 apart, noise 0.7/sqrt(8)
    # A saved Fisher-vector model carries its GMM: prediction re-reads features identically.
    record = run.load_model("face_sim.fisher.logreg")
    assert record["pooler"].gmm is not None and record["task"] == "classification"
    matrix = model_features(FeatureStore(store), record, label_space())
    stored = run.predictions("face_sim.fisher.logreg").set_index("media_id")
    again = record["pipeline"].predict_proba(matrix.x)
    known = record["pipeline"].classes_
    assert np.allclose(
        np.stack(stored.loc[list(matrix.media_ids), "probs"])[:, known], again, atol=1e-5
    )


def test_multilabel_and_regression_searches(
    ray_local: None, frame_store: tuple[str, Path], tmp_path: Path
) -> None:
    store, targets = frame_store
    common = {
        "store": store,
        "targets": targets,
        "feature_sets": [FeatureSetConfig(extractor="face_sim", pooling=["mean"])],
        "classifiers": ["logreg", "mlp"],
        "logreg_c": [10.0],
        "param_grid": {"mlp": {"hidden": [32], "lr": [0.01]}},
        "max_epochs": 40,
    }
    multilabel = TuneClassifiersConfig(
        run=tmp_path / "aus", task="multilabel", target_columns=["au1", "au2"], **common
    )
    best = run_tune_classifiers(multilabel).set_index("model")
    assert best.loc["face_sim.mean.logreg", "val_mean_f1"] == 1.0  # separable by construction
    run = RunFolder(tmp_path / "aus")
    record = run.load_model("face_sim.mean.logreg")
    assert record["task"] == "multilabel" and len(record["thresholds"]) == 2
    predictions = run.predictions("face_sim.mean.logreg")
    truth, probs = np.stack(predictions["target"]), np.stack(predictions["probs"])
    assert probs.shape == (36, 2) and (predictions["label"] == -1).all()
    assert ((probs >= np.array(record["thresholds"])) == (truth > 0.5)).mean() >= 0.95
    # The report scores the search's run: mean F1 over labels at the record's thresholds.
    assert run.meta()["labels"] == "emotiw7" and run.meta()["task"] == "multilabel"
    table = metrics_table(run).set_index(["model", "split"])
    row = table.loc[("face_sim.mean.logreg", "test")]
    assert (row["task"], row["level"]) == ("multilabel", "media")
    test = (predictions["split"] == "test").to_numpy()
    hand = np.mean(
        [
            f1_score(truth[test, k] > 0.5, probs[test, k] >= record["thresholds"][k])
            for k in range(2)
        ]
    )
    assert row["mean_f1"] == pytest.approx(hand)
    # One modality: its best model by val mean F1 alone cannot be fused; both models can.
    with pytest.raises(ConfigError, match=r"at least two models, got \['face_sim\.mean\."):
        run_fuse(FuseConfig(run=run.root))
    members = ["face_sim.mean.logreg", "face_sim.mean.mlp"]
    fused = run_fuse(FuseConfig(run=run.root, models=members, num_samples=0, random_candidates=200))
    assert fused["task"] == "multilabel" and len(fused["thresholds"]) == 2
    reported = metrics_table(run).set_index(["model", "split"])
    assert reported.loc[(fused["name"], "test"), "mean_f1"] == pytest.approx(
        fused["scores"]["test"]["mean_f1"]
    )

    regression = TuneClassifiersConfig(
        run=tmp_path / "va", task="regression", target_columns=["valence"], **common
    )
    best = run_tune_classifiers(regression).set_index("model")
    assert best.loc["face_sim.mean.logreg", "val_ccc"] >= 0.95  # valence = class - 1
    predictions = RunFolder(tmp_path / "va").predictions("face_sim.mean.mlp")
    assert np.stack(predictions["probs"]).shape == (36, 1)
    va = metrics_table(RunFolder(tmp_path / "va")).set_index(["model", "split"])
    test = (predictions["split"] == "test").to_numpy()
    y, p = np.stack(predictions["target"])[test, 0], np.stack(predictions["probs"])[test, 0]
    hand = 2 * np.cov(y, p, bias=True)[0, 1] / (y.var() + p.var() + (y.mean() - p.mean()) ** 2)
    assert va.loc[("face_sim.mean.mlp", "test"), "ccc"] == pytest.approx(hand)
    assert va.loc[("face_sim.mean.mlp", "test"), "task"] == "regression"


def test_asha_stops_poor_torch_trials_early(
    ray_local: None, frame_store: tuple[str, Path], tmp_path: Path
) -> None:
    store, _ = frame_store
    config = TuneClassifiersConfig(
        store=store,
        run=tmp_path / "run",
        feature_sets=[FeatureSetConfig(extractor="face_sim", pooling=["mean"])],
        classifiers=["mlp"],
        # ASHA compares a trial with those that reached the same epoch before it: one trial at
        # a time, in grid order (each good rate before its hopeless twin), makes the rungs'
        # contents and so the stops the same on every run, whatever finishes first.
        param_grid={"mlp": {"hidden": [16, 32, 64], "lr": [0.03, 1e-7]}},
        max_epochs=18,
        grace_epochs=2,
        max_concurrent_trials=1,
    )
    run_tune_classifiers(config)
    trials = RunFolder(tmp_path / "run").trials()
    epochs = trials.set_index("params")["epochs"]
    assert len(trials) == 6
    # Each hopeless trial meets a good one's score at the first rung and stops there.
    hopeless = trials["params"].str.contains("1e-07")
    assert (trials.loc[hopeless, "epochs"] == 2).all(), epochs
    best = trials.sort_values("val_macro_f1").iloc[-1]
    assert best["epochs"] == 18 and "0.03" in best["params"]
    # Only the best trial's record is kept, and it became the model: no refit needed.
    kept = list((tmp_path / "run" / "trial_models").glob("*.skops"))
    assert len(kept) == 1
    record = RunFolder(tmp_path / "run").load_model("face_sim.mean.mlp")
    assert kept[0].stem == record["trial_id"]
    assert (
        record["pipeline"].named_steps["model"].epochs_trained_
        == record["spec"]["params"]["epochs"]
    )


def test_optuna_search_spends_its_budget_and_resumes_its_study(
    ray_local: None, frame_store: tuple[str, Path], tmp_path: Path
) -> None:
    import optuna

    store, _ = frame_store
    config = TuneClassifiersConfig(
        store=store,
        run=tmp_path / "run",
        feature_sets=[FeatureSetConfig(extractor="face_sim", pooling=["mean", "pct"])],
        classifiers=["logreg", "rf"],
        search="optuna",
        num_samples=6,
    )
    run_tune_classifiers(config)
    ledger = next((tmp_path / "run" / "tune").glob("classifiers-*"))
    counts = [json.loads(p.read_text())["count"] for p in (ledger / "finished").glob("*.json")]
    assert sum(counts) == 6  # 6 trials (TPE may propose a configuration twice)
    assert len(RunFolder(tmp_path / "run").trials()) == len(counts)
    # A larger budget on the same search runs only the difference, on the same study.
    run_tune_classifiers(config.model_copy(update={"num_samples": 8}))
    counts = [json.loads(p.read_text())["count"] for p in (ledger / "finished").glob("*.json")]
    assert sum(counts) == 8
    study = optuna.load_study(study_name="classifiers", storage=f"sqlite:///{ledger / 'optuna.db'}")
    assert len(study.trials) == 8
