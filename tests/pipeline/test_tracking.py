"""Experiment tracking, read back with MLflow's own client: a tiny classifier search and the
fusion search over its run leave MLflow runs holding their parameters and metrics (the same
numbers the run folder holds). Training is checked where tests/finetune/test_train_pipeline.py
already trains: each trial of a training search is an MLflow run, and a training run is one
MLflow run (in the database `tracking_uri` names) with TensorBoard event files, going on
across a killed worker's restart and a new driver's resume."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from raypipe.config import (
    FeatureSetConfig,
    FuseConfig,
    TrackingConfig,
    TuneClassifiersConfig,
)
from raypipe.errors import ConfigError
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.tracking import mlflow_location, tune_callbacks
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.store.run_folder import RunFolder
from tests.classify.synthetic import make_store

pytestmark = pytest.mark.slow


def _runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment} in {uri}"
    return client.search_runs([found.experiment_id])


@pytest.mark.integration
def test_search_and_fusion_trials_are_mlflow_runs_in_the_run_folder(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder (./mlruns)
    store, _ = make_store(tmp_path / "store")
    run = tmp_path / "run"
    config = TuneClassifiersConfig(
        store=store.uri,
        run=run,
        feature_sets=[
            FeatureSetConfig(extractor="voice_sim"),
            FeatureSetConfig(extractor="words_sim"),
        ],
        classifiers=["logreg"],
        param_grid={"logreg": {"C": [0.1, 1.0]}},
        tracking=TrackingConfig(backends=["mlflow", "tensorboard"]),
    )
    run_tune_classifiers(config)
    uri = f"sqlite:///{run.resolve()}/mlflow/mlflow.db"
    runs = _runs(uri, "raypipe-tune-classifiers")
    # One MLflow run per trial, with the trial's spec as parameters and its scores as metrics.
    logged = {
        (
            r.data.params["spec/feature_set"],
            r.data.params["spec/classifier"],
            float(r.data.params["spec/params/C"]),
        ): r
        for r in runs
    }
    trials = RunFolder(run).trials()
    assert len(runs) == len(trials) == 4 and len(logged) == 4
    for row in trials.itertuples(index=False):
        found = logged[(row.feature_set, row.classifier, json.loads(row.params)["C"])]
        assert found.info.status == "FINISHED"
        assert found.data.metrics["val_macro_f1"] == pytest.approx(row.val_macro_f1)
        assert found.data.tags["raypipe_command"] == "tune-classifiers"
    assert list((run / "tune").rglob("events.out.tfevents*")), "no TensorBoard event files"

    fuse = FuseConfig(
        run=run,
        methods=["weighted"],
        num_samples=3,
        random_candidates=200,
        tracking=TrackingConfig(backends=["mlflow"], experiment="fusion weights"),
    )
    run_fuse(fuse)
    weights = _runs(uri, "fusion weights")
    assert len(weights) == 3
    for found in weights:
        assert set(found.data.params) >= {"w0", "w1", "rule"}
    # Each MLflow run's score is its trial's, as the run folder recorded it.
    logged = sorted(found.data.metrics["val_macro_f1"] for found in weights)
    recorded = sorted(RunFolder(run).fusion_trials()["val_macro_f1"])
    assert logged == pytest.approx(recorded)
    assert not (tmp_path / "mlruns").exists()


def test_wandb_without_the_package_is_a_config_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match="wandb package is not installed"):
        tune_callbacks(TrackingConfig(backends=["wandb"]), tmp_path, "fuse")


def test_a_run_on_object_storage_needs_a_tracking_uri() -> None:
    with pytest.raises(ConfigError, match=r"tracking\.tracking_uri"):
        mlflow_location(TrackingConfig(backends=["mlflow"]), "s3://bucket/run")
    server = TrackingConfig(backends=["mlflow"], tracking_uri="http://127.0.0.1:5000")
    assert mlflow_location(server, "s3://bucket/run") == ("http://127.0.0.1:5000", None)


def test_no_backends_no_callbacks(tmp_path: Path) -> None:
    assert tune_callbacks(TrackingConfig(), tmp_path, "tune-classifiers") == []
    assert not (tmp_path / "mlflow").exists()
