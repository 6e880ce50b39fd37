"""The feature store on a real S3-compatible server (moto's, on loopback): writes, readers,
compaction, verify, two writers at once, and how many objects a store keeps per 1,000 media."""

from __future__ import annotations

import multiprocessing
import os

import boto3
import pandas as pd

from raypipe.store.compaction import compact
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from raypipe.store.verify import verify
from tests.conftest import s3_bucket
from tests.store.rows import result


def _objects(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    # pyarrow leaves an empty "folder/" marker when it deletes a folder's last object.
    return [key for key in keys if not key.endswith("/")]


def _write(uri: str, prefix: str, media: int, batch: int) -> None:
    store = FeatureStore(uri)
    ids = [f"{prefix}{i:04d}" for i in range(media)]
    store.register_extractors([ExtractorRecord("vis", "v1", "frame", 2, "visual", {})])
    store.write_manifest(pd.DataFrame({"media_id": ids, "path": [f"/d/{i}.mp4" for i in ids]}))
    for start in range(0, media, batch):
        store.write_results([result(m, 1.0) for m in ids[start : start + batch]])


def test_objects_grow_with_data_written_not_with_media(s3_server: str) -> None:
    uri = f"s3://corpus/store{s3_bucket(s3_server, 'corpus')}"
    store = FeatureStore(uri)
    store.initialise()
    # Two jobs at once (processes, as on two nodes), 500 media each, 25 media per write.
    context = multiprocessing.get_context("spawn")
    env = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    jobs = [context.Process(target=_write, args=(uri, p, 500, 25)) for p in ("a", "b")]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=300)
        assert job.exitcode == 0
    assert env  # the children inherit credentials from the environment, as workers do
    expected = {f"{p}{i:04d}" for p in ("a", "b") for i in range(500)}
    assert store.done_media("vis", "v1") == expected
    written = _objects(s3_server, "corpus")
    # 40 writes x (media, frames, index) + manifest parts + records + marker.
    assert len(written) >= 120
    report = compact(store)
    assert report.data_files_after == 2
    kept = _objects(s3_server, "corpus")
    # After compaction the store holds a fixed number of objects whatever the media count:
    # marker, manifest, extractor record, and one index, media and frames file per version.
    assert len(kept) == 6, sorted(kept)
    per_thousand = len(kept) / len(expected) * 1000
    assert per_thousand == 6.0  # 1,000 media here; a fixed 6 objects until files pass 128 MiB
    assert store.done_media("vis", "v1") == expected
    assert len(store.frame_table("vis")) == 1000 * 3
    assert verify(store).ok
