"""The whole flow with every path on an S3-compatible server (moto's, on loopback) and only
environment credentials: extract -> tune-classifiers -> fuse -> report -> predict, then the
results read back with boto3 and pyarrow alone. Nothing may appear on local disk outside
temporary scratch."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from raypipe.config import ExtractConfig, FuseConfig, PredictConfig, TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.fuse import run_fuse
from raypipe.pipeline.predict import run_predict
from raypipe.pipeline.tune_classifiers import run_tune_classifiers
from raypipe.store.run_folder import RunFolder
from tests.conftest import file_tree, s3_bucket
from tests.pipeline.test_extract_pipeline import _only

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "flow-corpus"


def _objects(client: object, prefix: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])  # type: ignore[attr-defined]
    return {
        o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()  # type: ignore[attr-defined]
        for o in listed
    }


def test_every_path_on_object_storage(
    ray_local: None,
    s3_server: str,
    demo_set: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    query = s3_bucket(s3_server, BUCKET)
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}")
    rows = pd.read_csv(demo_set)
    rows = rows[~rows["media_id"].str.startswith("broken")]
    for path in rows["path"]:
        client.upload_file(str(demo_set.parent / path), BUCKET, f"media/{path}")
    labelled = rows[["media_id", "path", "label", "split"]]
    client.put_object(Bucket=BUCKET, Key="media/train.csv", Body=labelled.to_csv(index=False))
    new = rows[rows["split"] == "test"].head(4)[["media_id", "path", "label"]]
    new["media_id"] = "new_" + new["media_id"]
    client.put_object(Bucket=BUCKET, Key="media/new.csv", Body=new.to_csv(index=False))

    def uri(key: str) -> str:
        return f"s3://{BUCKET}/{key}{query}"

    # Work from an empty folder: every relative default would land here.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    home_before = file_tree(Path.home() / ".raypipe")  # empty when there is no such folder

    run_extract(
        load_config(
            ExtractConfig,
            None,
            _only("opensmile"),
            {"manifest": uri("media/train.csv"), "out": uri("store")},
        )
    )
    tune = TuneClassifiersConfig(
        store=uri("store"),
        run=uri("run"),
        feature_sets=[{"extractor": "opensmile"}],
        classifiers=["logreg", "linsvc"],
        param_grid={"logreg": {"C": [0.1, 1.0]}, "linsvc": {"C": [0.1]}},
        max_concurrent_trials=2,
    )
    best = run_tune_classifiers(tune)
    assert set(best["model"]) == {"opensmile.logreg", "opensmile.linsvc"}
    # A re-run of the finished search reads its ledger on the bucket and runs no trial.
    trials_before = RunFolder(uri("run")).trials()
    again = run_tune_classifiers(tune)
    pd.testing.assert_frame_equal(again, best)
    pd.testing.assert_frame_equal(RunFolder(uri("run")).trials(), trials_before)

    record = run_fuse(
        FuseConfig(
            run=uri("run"),
            models=["opensmile.logreg", "opensmile.linsvc"],
            methods=["weighted", "greedy"],
            num_samples=4,
            random_candidates=50,
            cv_folds=2,
        )
    )
    report = subprocess.run(
        ["raypipe", "report", uri("run"), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    metrics = pd.DataFrame(json.loads(report.stdout))
    selected = record["name"]
    assert selected in set(metrics["model"])
    summary = run_predict(
        PredictConfig(run=uri("run"), manifest=uri("media/new.csv"), out=uri("out/sub.csv"))
    )
    assert summary.media == len(new)

    # Read back with boto3 and pyarrow only.
    run_files = _objects(client, "run/")
    assert json.loads(run_files["run/run.json"])["store"].startswith(f"s3://{BUCKET}/store")
    trials = pq.read_table(io.BytesIO(run_files["run/trials.parquet"])).to_pandas()
    assert len(trials) == 3 and trials["val_macro_f1"].notna().all()
    for name in ("opensmile.logreg", "opensmile.linsvc", selected):
        table = pq.read_table(io.BytesIO(run_files[f"run/predictions/{name}.parquet"]))
        assert table.num_rows == len(labelled)
    assert f"run/fusion/{selected}.skops" in run_files
    report_md = run_files["run/report/report.md"].decode()
    assert selected in report_md and "run/report/report.html" in run_files
    assert any(k.endswith(".png") for k in run_files if k.startswith("run/report/"))
    # Ray Tune's trial results and checkpoints went to the bucket, its pickles were removed.
    tune_keys = [k for k in run_files if k.startswith("run/tune/classifiers-")]
    assert sum(k.endswith("/checkpoint_000000/model.skops") for k in tune_keys) == 3
    assert sum("/finished/" in k for k in tune_keys) == 3  # the search's ledger
    assert any(k.startswith("run/tune/fusion/") for k in run_files)
    assert not [k for k in run_files if k.endswith((".pkl", "tuner.pkl"))]
    submission = pd.read_csv(io.BytesIO(_objects(client, "out/")["out/sub.csv"]))
    assert sorted(submission["media_id"]) == sorted(new["media_id"])
    assert submission.filter(like="prob_").sum(axis=1).round(4).eq(1).all()
    assert any(k.startswith("run/predict/store/") for k in run_files)

    assert file_tree(work) == set(), "the flow wrote into the working folder"
    assert not (work / "s3:").exists()
    assert file_tree(Path.home() / ".raypipe") == home_before
    assert RunFolder(uri("run")).fusions()
