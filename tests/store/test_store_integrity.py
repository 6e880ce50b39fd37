"""The store's index, batching, compaction, damage and conversion, on real files.

Damage is done to the bytes on disk (truncation, flipped bytes); the one fault that cannot be
caused for real at a chosen point, a crash between a write's data files and its index file, is
injected by making the index write raise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.errors import RaypipeError
from raypipe.store import index as store_index
from raypipe.store.compaction import collect_garbage, compact
from raypipe.store.feature_store import ExtractorRecord, FeatureStore, MediaResult
from raypipe.store.migrate import migrate
from raypipe.store.schema import MEDIA_SCHEMA
from raypipe.store.verify import verify
from tests.store.rows import frame_rows, result


def _files(root: Path, folder: str) -> list[Path]:
    return sorted(p for p in (root / folder).rglob("*.parquet"))


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    s = FeatureStore(str(tmp_path / "store"))
    s.initialise()
    s.register_extractors([ExtractorRecord("vis", "v1", "frame", 2, "visual", {}, ["a", "b"])])
    ids = [f"m{i:03d}" for i in range(40)]
    s.write_manifest(pd.DataFrame({"media_id": ids, "path": [f"/data/{i}.mp4" for i in ids]}))
    return s


def test_a_write_of_many_media_makes_one_file_per_level_and_one_index_file(
    store: FeatureStore, tmp_path: Path
) -> None:
    store.write_results([result(f"m{i:03d}", i) for i in range(40)])
    root = tmp_path / "store"
    assert len(_files(root, "media")) == 1 and len(_files(root, "frames")) == 1
    assert len(_files(root, "_index")) == 1
    assert len(store.frame_table("vis")) == 40 * 3
    assert store.done_media("vis", "v1") == {f"m{i:03d}" for i in range(40)}
    assert store.extractors()["vis"].feature_names == ["a", "b"]


def test_a_crash_between_data_files_and_index_loses_only_that_write(
    store: FeatureStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write_results([result("m000")])

    def crash(*args: object, **kwargs: object) -> str:
        raise RaypipeError("crashed before the index file")

    with monkeypatch.context() as patched:
        patched.setattr(store_index, "commit", crash)
        with pytest.raises(RaypipeError):
            store.write_results([result("m001", 10.0), result("m000", 99.0)])
    # The data files of the failed write exist, but nothing reads them: m001 is not done and
    # m000 keeps its first result.
    assert len(_files(tmp_path / "store", "frames")) == 2
    assert store.done_media("vis", "v1") == {"m000"}
    frames = store.frame_table("vis")
    assert sorted(frames["features"].map(lambda f: f[0])) == [0.0, 1.0, 2.0]
    # The re-run writes m001; gc removes the orphaned files of the crashed write.
    store.write_results([result("m001", 10.0)])
    assert store.done_media("vis", "v1") == {"m000", "m001"}
    report = collect_garbage(store, min_age_s=0)
    assert report.files_removed == 2  # the orphaned media and frames files
    assert len(store.frame_table("vis")) == 6


def test_rewritten_media_are_read_once_and_compaction_leaves_plain_readers_one_row(
    store: FeatureStore, tmp_path: Path
) -> None:
    for i in range(5):
        store.write_results([result(f"m{j:03d}", 100.0 * i) for j in range(i * 8, i * 8 + 8)])
    store.write_results([result("m003", 7.0)])  # m003 computed again (e.g. its file changed)
    assert len(store.media_table("vis")) == 40
    frames = store.frame_table("vis").set_index(["media_id", "frame_index"])
    assert frames.loc[("m003", 0), "features"][0] == 7.0
    root = tmp_path / "store"
    # Without raypipe, before compaction, m003 shows twice; after it, once.
    assert (pd.read_parquet(root / "media")["media_id"] == "m003").sum() == 2
    report = compact(store)
    assert report.data_files_before == 12 and report.data_files_after == 2
    plain = pd.read_parquet(root / "media")
    assert len(plain) == 40 and plain["media_id"].is_unique
    plain_frames = pq.read_table(root / "frames").to_pandas()
    assert len(plain_frames) == 120
    m003 = plain_frames[plain_frames["media_id"] == "m003"].sort_values("frame_index")
    assert m003["features"].iloc[0][0] == 7.0
    assert len(_files(root, "_index")) == 1 and len(_files(root, "manifest")) == 1
    assert verify(store).ok  # the re-pointed index rows carry the new files' checksums


def test_a_truncated_index_file_is_named_skipped_and_its_media_queued_again(
    store: FeatureStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.write_results([result("m000")])
    failed = {"status": "failed", "error": "decoder timed out"}
    store.write_results([MediaResult("vis", "v1", "m001", failed)])
    store.write_results([result("m001")])  # the retry succeeded; its index file gets damaged
    bad = _files(tmp_path / "store", "_index")[2]
    bad.write_bytes(bad.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="raypipe"):
        status = store.status().set_index("media_id")
    assert str(bad) in caplog.text
    assert status.loc["m000", "status"] == "ok"
    assert status.loc["m001", "status"] == "failed"  # the older row shows through, until...
    report = verify(store, repair=True)
    assert [d.kind for d in report.damaged] == ["index"]
    assert report.retired == {"vis@v1": 1}
    assert not bad.exists() and (tmp_path / "store" / "_quarantine").exists()
    assert store.done_media("vis", "v1") == {"m000"}  # ...the repair queues m001 again
    assert verify(store).ok


def test_flipped_bytes_in_a_frames_file_are_found_and_their_media_recomputed(
    store: FeatureStore, tmp_path: Path
) -> None:
    store.write_results([result("m000"), result("m001")])
    store.write_results([result("m002")])
    target = next(p for p in _files(tmp_path / "store", "frames") if len(pq.read_table(p)) == 6)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    report = verify(store)
    assert not report.ok and report.damaged[0].kind == "data"
    assert "checksum differs" in report.damaged[0].problem
    assert report.damaged[0].path.endswith(target.name)
    assert store.status()["status"].tolist().count("ok") == 3  # status never reads data files
    repaired = verify(store, repair=True)
    assert repaired.retired == {"vis@v1": 2}
    assert store.done_media("vis", "v1") == {"m002"}  # the two media go back to the queue
    assert len(store.frame_table("vis")) == 3  # readers never see the damaged rows
    store.write_results([result("m000"), result("m001")])
    assert verify(store).ok and len(store.frame_table("vis")) == 9


def test_damaged_manifest_and_extractor_record_are_named_not_fatal(
    store: FeatureStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.write_results([result("m000")])
    part = _files(tmp_path / "store", "manifest")[0]
    part.write_bytes(part.read_bytes()[:30])
    record = tmp_path / "store" / "extractors" / "vis" / "v1.json"
    record.write_text(record.read_text()[:20])
    with caplog.at_level(logging.WARNING, logger="raypipe"):
        assert store.read_manifest().empty
        assert store.extractors() == {}
    assert str(part) in caplog.text and str(record) in caplog.text
    kinds = sorted(d.kind for d in verify(store, repair=True).damaged)
    assert kinds == ["extractor record", "manifest"]
    store.register_extractors([ExtractorRecord("vis", "v1", "frame", 2, "visual", {})])
    store.write_manifest(pd.DataFrame({"media_id": ["m000"], "path": ["/data/m000.mp4"]}))
    assert store.status().set_index("media_id").loc["m000", "status"] == "ok"


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    (tmp_path / "store" / "frames").write_text("a file where a folder must go")
    with pytest.raises(RaypipeError, match="Cannot write"):
        store.write_results([result("m000")])
    assert not list((tmp_path / "store").rglob(".tmp-*"))


def test_the_manifest_records_only_changed_rows_and_the_newest_row_wins(
    store: FeatureStore, tmp_path: Path
) -> None:
    assert store.write_manifest(store.read_manifest()) == 0
    changed = pd.DataFrame({"media_id": ["m001", "new"], "path": ["/elsewhere.mp4", "/n.mp4"]})
    assert store.write_manifest(changed) == 2
    manifest = store.read_manifest().set_index("media_id")
    assert manifest.loc["m001", "path"] == "/elsewhere.mp4" and len(manifest) == 41


def _write_v1_store(root: Path) -> None:
    """A store as raypipe wrote it before format 2: one Parquet file per media, keys
    ``<id>-<hash>``; the media file of "a" predates the quality columns (older schema)."""
    root.mkdir()
    (root / "raypipe_store.json").write_text(json.dumps({"format": 1}))
    ids = ["a", "b", "part-07"]
    manifest = {
        "media_id": ids,
        "path": [f"/x/{i}.mp4" for i in ids],
        "label": ["Happy", "Sad", "Angry"],
        "split": ["train", "val", "test"],
    }
    pq.write_table(pa.Table.from_pydict(manifest), root / "manifest.parquet")
    record = {
        "name": "vis",
        "version": "v1",
        "level": "frame",
        "dim": 2,
        "modality": "visual",
        "config": {"fps": 3},
    }
    (root / "extractors.json").write_text(json.dumps({"vis": record}))
    media = root / "media" / "extractor=vis" / "version=v1"
    frames = root / "frames" / "extractor=vis" / "version=v1"
    media.mkdir(parents=True)
    frames.mkdir(parents=True)
    stamp = pd.Timestamp("2026-01-02T03:04:05Z")
    for media_id, value, status in (("a", 1.0, "ok"), ("b", 0.0, "failed"), ("part-07", 5.0, "ok")):
        row = {f.name: None for f in MEDIA_SCHEMA}
        row.update(media_id=media_id, status=status, frames=3, written_at=stamp)
        row.update(error=None if value else "bad", coverage=0.5, tracks=2)
        table = pa.Table.from_pylist([row], MEDIA_SCHEMA)
        if media_id == "a":
            table = table.drop_columns(["coverage", "tracks"])
        pq.write_table(table, media / f"{media_id}-0123456789ab.parquet")
        if status == "ok":
            pq.write_table(
                frame_rows(media_id, 3, value), frames / f"{media_id}-0123456789ab.parquet"
            )


def test_a_format_1_store_is_refused_with_the_command_and_converts_without_recomputing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "old"
    _write_v1_store(root)
    store = FeatureStore(str(root))
    with pytest.raises(RaypipeError, match="raypipe store migrate"):
        store.require()
    report = migrate(store)
    assert report.versions == ["vis@v1"] and report.removed_files == 7
    store.require()
    status = store.status().set_index("media_id")
    assert status.loc["a", "status"] == "ok" and status.loc["b", "status"] == "failed"
    assert status.loc["part-07", "status"] == "ok"  # an id that looks like a new file name
    assert status.loc["b", "coverage"] == 0.5 and pd.isna(status.loc["a", "coverage"])
    frames = store.frame_table("vis").sort_values(["media_id", "frame_index"])
    assert np.allclose(np.stack(frames["features"])[:, 0], [1, 2, 3, 5, 6, 7])
    assert store.extractors()["vis"].config == {"fps": 3}
    assert store.read_manifest().set_index("media_id").loc["b", "label"] == "Sad"
    written = store.media_table("vis").set_index("media_id")["written_at"]
    assert (written == pd.Timestamp("2026-01-02T03:04:05Z")).all()  # first-written times kept
    assert not (root / "manifest.parquet").exists() and not (root / "extractors.json").exists()
    assert verify(store).ok


def test_a_conversion_stopped_while_removing_old_files_is_finished_by_a_rerun(
    tmp_path: Path,
) -> None:
    root = tmp_path / "old"
    _write_v1_store(root)
    store = FeatureStore(str(root))
    migrate(store)
    # As if it stopped after the switch: the marker says so and an old file is still there.
    (root / "raypipe_store.json").write_text(json.dumps({"format": 2, "removing_format_1": True}))
    leftover = root / "media" / "extractor=vis" / "version=v1" / "b-0123456789ab.parquet"
    pq.write_table(pa.table({"media_id": ["b"]}), leftover)
    assert migrate(store).removed_files == 1 and not leftover.exists()
    assert json.loads((root / "raypipe_store.json").read_text()) == {"format": 2}
    assert pd.read_parquet(root / "media")["media_id"].is_unique


def test_two_jobs_writing_one_store_at_once_keep_everyresult(tmp_path: Path) -> None:
    import multiprocessing

    uri = str(tmp_path / "store")
    FeatureStore(uri).initialise()
    context = multiprocessing.get_context("spawn")
    jobs = [context.Process(target=_write_many, args=(uri, p, 30)) for p in ("a", "b")]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
        assert job.exitcode == 0
    store = FeatureStore(uri)
    expected = {f"{p}{i}" for p in ("a", "b") for i in range(30)}
    assert set(store.extractors()) == {"vis", "a-only", "b-only"}
    assert set(store.read_manifest()["media_id"]) == expected
    assert store.done_media("vis", "v1") == expected
    compact(store)
    assert store.done_media("vis", "v1") == expected and len(store.frame_table("vis")) == 180


def _write_many(uri: str, prefix: str, count: int) -> None:
    store = FeatureStore(uri)
    store.register_extractors([ExtractorRecord(f"{prefix}-only", "v", "media", 1, "audio", {})])
    for i in range(count):
        media_id = f"{prefix}{i}"
        store.register_extractors([ExtractorRecord("vis", "v1", "frame", 2, "visual", {})])
        store.write_manifest(pd.DataFrame({"media_id": [media_id], "path": ["x"]}))
        store.write_results([result(media_id)])


def test_the_newest_row_of_each_media_wins_ties_to_the_row_read_last() -> None:
    stamps = pa.array([5, 9, 5, 7, 9], pa.timestamp("us", tz="UTC"))
    table = pa.table({"media_id": ["a", "b", "a", "c", "b"], "written_at": stamps, "x": range(5)})
    newest = store_index.newest_per_media(table).to_pydict()
    assert dict(zip(newest["media_id"], newest["x"], strict=True)) == {"a": 2, "b": 4, "c": 3}


@pytest.mark.integration
def test_plain_readers_and_named_features(
    ray_local: None, store: FeatureStore, tmp_path: Path
) -> None:
    import duckdb
    import ray.data

    store.write_results([result(f"m{i:03d}", i) for i in range(4)])
    store.write_results([result("m000", 50.0)])
    compact(store)
    root = tmp_path / "store"
    media = pd.read_parquet(root / "media")
    assert sorted(media["media_id"]) == [f"m{i:03d}" for i in range(4)]
    glob = f"{root}/frames/extractor=vis/*/*.parquet"
    frames = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true)").df()
    assert len(frames) == 12 and set(frames["version"]) == {"v1"}
    first = frames[(frames["media_id"] == "m000") & (frames["frame_index"] == 0)]
    assert list(first["features"].iloc[0]) == [50.0, 1.0]
    assert ray.data.read_parquet(str(root / "media" / "extractor=vis")).count() == 4
    named = store.named_features("vis").set_index(["media_id", "frame_index"])
    assert list(named.columns) == ["timestamp_s", "a", "b"]
    assert named.loc[("m002", 1), "a"] == 3.0 and named.loc[("m000", 0), "a"] == 50.0
