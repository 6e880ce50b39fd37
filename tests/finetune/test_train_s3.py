"""`raypipe train --run s3://...` on a store's face crops that are on S3 too (moto's server on
loopback): checkpoints, export, report and provenance land on the bucket, a re-run resumes
from the checkpoints there, the exported extract config re-extracts from its URI, and nothing
is written into the working folder."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pandas as pd
import pytest
from typer.testing import CliRunner

from raypipe.config import ExtractConfig, TrainConfig
from raypipe.config.base import load_config
from raypipe.pipeline.dry_run import dry_run_train
from raypipe.pipeline.extract import run_extract
from raypipe.pipeline.train import run_name, run_train
from raypipe.store.feature_store import FeatureStore
from tests.conftest import file_tree, s3_bucket
from tests.pipeline.test_extract_pipeline import _only

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "train-run"


def _keys(client: object, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])  # type: ignore[attr-defined]
    return sorted(o["Key"] for o in listed)


def test_train_run_and_store_on_object_storage(
    ray_local: None,
    s3_server: str,
    demo_set: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from raypipe.cli import app

    query = s3_bucket(s3_server, BUCKET)
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}")

    def uri(key: str) -> str:
        return f"s3://{BUCKET}/{key}{query}"

    rows = pd.read_csv(demo_set)
    subset = rows[rows["label"].isin(["Happy", "Sad"]) & rows["split"].isin(["train", "val"])]
    subset = subset.groupby(["label", "split"]).head(1)
    subset = subset.assign(path=[str((demo_set.parent / p).resolve()) for p in subset["path"]])
    manifest = tmp_path / "subset.csv"
    subset.to_csv(manifest, index=False)
    epochs_log = tmp_path / "epochs.log"

    # Work from an empty folder: every relative default would land here.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    tracks = [
        *_only("face_tracks"),
        "face_tracks.enabled=true",
        "face_tracks.store_crops=true",
        "face_tracks.crop_size=32",
        "face_tracks.faces=main",
        "video.fps=2",
    ]
    flags = {"manifest": manifest, "out": uri("store")}
    run_extract(load_config(ExtractConfig, None, tracks, flags))

    def record_epoch(epoch: int, rank: int) -> None:
        with open(epochs_log, "a") as handle:
            handle.write(f"{epoch}\n")

    overrides = [
        "data.source=store",
        f"data.store={uri('store')}",
        "data.max_per_media=3",
        "data.image_size=32",
        "batch_size=8",
        "epochs=2",
        "early_stop_patience=0",
    ]
    config = load_config(TrainConfig, None, overrides, {"run": uri("run")})
    assert config.run == uri("run")  # a URI stays a URI (no Path("s3:/..."))
    summary = run_train(config, epoch_hook=record_epoch)
    assert epochs_log.read_text().split() == ["1", "2"]
    assert summary.export_model == uri("run/export/model.pt")

    keys = _keys(client, "run/")
    name = run_name(config)
    for epoch in ("epoch_0001", "epoch_0002"):
        assert f"run/ray/{name}/{epoch}/model.pt" in keys
        assert f"run/ray/{name}/{epoch}/training_state.json" in keys
    for key in (
        "run/provenance.json",
        "run/export/model.pt",
        "run/export/extract.yaml",
        "run/export/manifest.parquet",
        "run/report/report.md",
        "run/report/curves.png",
        "run/report/metrics.csv",
        "run/train_summary.json",
    ):
        assert key in keys, key

    def read(key: str) -> bytes:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    provenance = json.loads(read("run/provenance.json"))["train"]
    assert provenance["config"]["run"] == uri("run")
    extract_yaml = read("run/export/extract.yaml").decode()
    assert f"raypipe extract --config {uri('run/export/extract.yaml')}" in extract_yaml
    assert uri("run/export/model.pt") in extract_yaml

    # A re-run of the same command resumes from the checkpoints on the bucket: no epoch runs.
    plan = dry_run_train(config)
    assert plan.summary["resume"]["epoch"] == 2 and plan.summary["resume"]["finished"]
    assert plan.summary["resume"]["checkpoint"] == uri(f"run/ray/{name}/epoch_0002")
    epochs_log.write_text("")
    again = run_train(config, epoch_hook=record_epoch)
    assert epochs_log.read_text().split() == []
    assert again.epochs_done == 2 and again.best_epoch == summary.best_epoch
    metrics = pd.read_csv(client.get_object(Bucket=BUCKET, Key="run/report/metrics.csv")["Body"])
    assert metrics["epoch"].tolist() == [1, 2]
    assert not [k for k in _keys(client, f"run/ray/{name}/") if "/epoch_0003/" in k]

    # The export config on the bucket re-extracts with the backbone on the bucket.
    result = CliRunner().invoke(app, ["extract", "--config", uri("run/export/extract.yaml")])
    assert result.exit_code == 0, result.output
    features = FeatureStore(uri("store")).media_table("face_backbone")
    assert sorted(features["media_id"]) == sorted(subset["media_id"])
    assert (features["status"] == "ok").all()

    assert file_tree(work) == set(), "train wrote into the working folder"
