"""`raypipe extract` with the manifest, the media and the store on an S3-compatible server
(moto's, on loopback), credentials from the environment only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.pipeline.extract import run_extract
from raypipe.store.feature_store import FeatureStore
from tests.conftest import s3_bucket
from tests.pipeline.test_extract_pipeline import _only

pytestmark = pytest.mark.integration


def test_manifest_media_and_store_on_object_storage(
    ray_local: None, s3_server: str, demo_set: Path
) -> None:
    query = s3_bucket(s3_server, "corpus-media")
    client = boto3.client("s3", endpoint_url=f"http://{s3_server}")
    rows = pd.read_csv(demo_set)
    good = rows[~rows["media_id"].str.startswith("broken")].head(2)
    chosen = pd.concat([good, rows[rows["media_id"] == "broken_empty"]])
    for path in chosen["path"]:
        client.upload_file(str(demo_set.parent / path), "corpus-media", f"media/{path}")
    # Relative paths name media beside the manifest; one row names a file that is not there.
    manifest = chosen[["media_id", "path", "label", "split"]].copy()
    manifest.loc[len(manifest)] = ["gone", "clips/gone.mp4", "Happy", "test"]
    client.put_object(
        Bucket="corpus-media", Key="media/manifest.csv", Body=manifest.to_csv(index=False)
    )
    scratch_before = set(Path(tempfile.gettempdir()).glob("raypipe-media-*"))
    flags = {
        "manifest": f"s3://corpus-media/media/manifest.csv{query}",
        "out": f"s3://corpus-media/store{query}",
    }
    config = load_config(ExtractConfig, None, _only("opensmile"), flags)
    summary = run_extract(config)
    assert (summary.computed["ok"], summary.computed["failed"]) == (2, 1)
    assert summary.manifest_issues == 1

    store = FeatureStore(flags["out"])
    status = store.status().set_index("media_id")
    assert (status.loc[good["media_id"], "status"] == "ok").all()
    assert "empty" in status.loc["broken_empty", "error"]
    assert "s3://corpus-media/media/clips/gone.mp4" in status.loc["gone", "error"]
    features = store.media_table("opensmile").set_index("media_id")
    assert all(np.isfinite(features.loc[m, "features"]).all() for m in good["media_id"])
    version = store.extractors()["opensmile"].version
    recorded = store.index("opensmile", version, ["path"]).set_index("media_id")["path"]
    assert recorded[good["media_id"]].str.startswith("s3://corpus-media/media/").all()
    # Fingerprints read on the object store: a re-run computes nothing.
    again = run_extract(config)
    assert sum(again.computed.values()) == 0 and again.skipped == 3
    # The local copies the workers decoded are gone.
    assert set(Path(tempfile.gettempdir()).glob("raypipe-media-*")) == scratch_before
