"""Extraction on the shared local Ray: real clips, real weights, broken files, re-runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.pipeline.extract import run_extract
from raypipe.store.feature_store import FeatureStore
from tests.extract_options import only_extractors as _only

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def extracted(
    ray_local: None, demo_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FeatureStore, ExtractConfig]:
    store = tmp_path_factory.mktemp("extract") / "store"
    # The visual and openSMILE paths; other extractors have tests of their own.
    overrides = ["video.fps=3", *_only("face_expression", "opensmile")]
    config = load_config(ExtractConfig, None, overrides, {"manifest": demo_set, "out": str(store)})
    summary = run_extract(config)
    assert summary.computed["ok"] + summary.computed["failed"] > 0
    return FeatureStore(str(store)), config


def _own_copy(extracted, tmp_path: Path) -> tuple[FeatureStore, ExtractConfig]:
    """A copy of the shared store, for a test that writes to it: the shared one stays as the
    fixture made it, whichever tests run and in whatever order."""
    import shutil

    store, config = extracted
    copy = tmp_path / "store"
    shutil.copytree(store.root, copy)
    return FeatureStore(str(copy)), config.model_copy(update={"out": str(copy)})


def test_broken_files_fail_with_reasons_and_good_ones_succeed(extracted) -> None:
    store, config = extracted
    status = store.status()
    broken = status[status["media_id"].str.startswith("broken")]
    good = status[~status["media_id"].str.startswith("broken")]
    assert (broken["status"] == "failed").all() and len(broken) == 3 * 2
    reasons = broken.set_index(["media_id", "extractor"])["error"]
    assert "empty (0 bytes)" in reasons[("broken_empty", "face_expression")]
    assert "not a readable media container" in reasons[("broken_text", "opensmile")]
    assert reasons[("broken_truncated", "face_expression")].startswith(str(Path("/")))
    for reason in reasons:
        assert "\n" not in reason and ".mp4" in reason
    assert (good["status"] == "ok").all()
    n_good = len(pd.read_csv(config.manifest)) - 3
    assert len(good) == n_good * 2


def test_frames_and_faces_are_recorded(extracted) -> None:
    store, _ = extracted
    status = store.status()
    faces = status[(status["extractor"] == "face_expression") & (status["status"] == "ok")]
    assert (faces["frames"] >= 5).all()
    assert (faces["face_frames"] >= faces["frames"] * 0.8).all()
    frames = store.frame_table("face_expression")
    with_face = frames[frames["has_face"]]
    assert len(np.stack(with_face["features"]).T) == 128
    assert (
        np.diff(frames[frames["media_id"] == frames["media_id"].iloc[0]]["timestamp_s"]) > 0
    ).all()
    audio = store.media_table("opensmile")
    ok = audio[audio["status"] == "ok"]
    assert np.stack(ok["features"]).shape[1] == 88 and np.isfinite(np.stack(ok["features"])).all()


def test_rerun_recomputes_nothing(extracted, tmp_path: Path) -> None:
    store, config = _own_copy(extracted, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in Path(store.root).rglob("*.parquet")}
    summary = run_extract(config)
    assert sum(summary.computed.values()) == 0
    assert summary.skipped == summary.media * 2
    after = {p: p.stat().st_mtime_ns for p in Path(store.root).rglob("*.parquet")}
    changed = [p for p in after if p.name != "manifest.parquet" and after[p] != before.get(p)]
    assert changed == []


def test_changed_config_recomputes_only_that_extractor(extracted, tmp_path: Path) -> None:
    store, config = _own_copy(extracted, tmp_path)
    old_audio = store.extractors()["opensmile"].version
    old_face = store.extractors()["face_expression"].version
    changed = config.model_copy(
        update={"face_expression": config.face_expression.model_copy(update={"output": "probs"})}
    )
    summary = run_extract(changed)
    manifest_size = summary.media
    assert summary.computed["ok"] + summary.computed["failed"] == manifest_size
    assert summary.skipped == manifest_size  # openSMILE untouched
    assert store.extractors()["opensmile"].version == old_audio
    assert store.extractors()["face_expression"].version != old_face
    assert len(store.done_media("face_expression", old_face)) == manifest_size


def test_store_reads_with_ray_data_without_raypipe(extracted) -> None:
    import ray

    store, _ = extracted
    dataset = ray.data.read_parquet(f"{store.root}/media/extractor=opensmile")
    rows = dataset.take_all()
    assert {"media_id", "status", "features", "version"} <= set(rows[0])
    assert len(rows) == len(store.read_manifest())


def test_status_reports_the_visual_quality_summary(extracted) -> None:
    store, _ = extracted
    status = store.status()
    faces = status[(status["extractor"] == "face_expression") & (status["status"] == "ok")]
    assert (faces["tracks"] >= 1).all() and (faces["face_score"] > 0.5).all()
    assert (faces["decode_s"] > 0).all() and (faces["faces_s"] > 0).all()
    audio = status[status["extractor"] == "opensmile"]
    assert audio["tracks"].isna().all()


def test_new_backbone_checkpoint_recomputes_only_that_extractor(extracted, tmp_path: Path) -> None:
    import torch

    from raypipe.models.backbones import build_backbone

    store, config = _own_copy(extracted, tmp_path)
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"resnet18-{seed}.pt"
        torch.save(build_backbone("resnet18").net.state_dict(), path)
        checkpoints.append(path)
    versions = []
    for checkpoint in checkpoints:
        backbone = {"enabled": True, "checkpoint": str(checkpoint), "input": "frame"}
        changed = config.model_copy(
            update={
                "face_backbone": config.face_backbone.model_copy(
                    update={**backbone, "crop_size": 32}
                )
            }
        )
        summary = run_extract(changed)
        assert summary.computed["ok"] + summary.computed["failed"] == summary.media
        versions.append(store.extractors()["face_backbone"].version)
    assert versions[0] != versions[1]
    frames = store.frame_table("face_backbone")
    assert np.stack(frames["features"]).shape[1] == 512


#: Media-row columns that time a run (seconds per stage, when written): they differ between two
#: runs of the same work; every other column must not.
_TIMING_COLUMNS = ("seconds", "written_at", "probe_s", "decode_s", "faces_s", "embed_s")


def test_cpu_decode_tasks_feed_the_actors_with_the_same_results(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    """The same media extracted with a CPU decode task ahead of the actor and without one:
    the stored frame rows (features, boxes, landmarks, times) and media rows are equal."""
    import pyarrow as pa

    manifest = pd.read_csv(demo_set)
    subset = pd.concat([manifest.head(2), manifest[manifest["media_id"].str.startswith("broken")]])
    subset["path"] = [str((demo_set.parent / p).resolve()) for p in subset["path"]]
    path = tmp_path / "subset.csv"
    subset.to_csv(path, index=False)
    stores = {}
    for name, extra in (("ahead", ["decode_tasks=1"]), ("in_actor", [])):
        config = load_config(
            ExtractConfig,
            None,
            ["video.fps=3", "workers=1", *extra, *_only("face_expression")],
            {"manifest": path, "out": str(tmp_path / name)},
        )
        summary = run_extract(config)
        assert summary.computed == {"ok": 2, "failed": 3}, (name, summary.line())
        stores[name] = FeatureStore(str(tmp_path / name))
    status = stores["ahead"].status().set_index("media_id")
    assert "empty (0 bytes)" in status.loc["broken_empty", "error"]
    good = status[status["status"] == "ok"]
    assert (good["face_frames"] >= 5).all() and (good["decode_s"] > 0).all()

    def rows(store: FeatureStore, level: str, keys: list[str]) -> pa.Table:
        version = store.extractors()["face_expression"].version
        table = store.read_level(level, "face_expression", version)
        table = table.drop_columns([c for c in _TIMING_COLUMNS if c in table.column_names])
        return table.sort_by([(k, "ascending") for k in keys])

    keys = ["media_id", "frame_index", "face_index"]
    ahead, in_actor = (rows(stores[n], "frames", keys) for n in ("ahead", "in_actor"))
    assert ahead.num_rows == in_actor.num_rows and ahead.num_rows >= 10
    for column in ahead.column_names:  # per column, so a failure names it
        assert ahead[column].equals(in_actor[column]), f"frames column {column} differs"
    features = np.stack(ahead.filter(ahead["has_face"])["features"].to_numpy(zero_copy_only=False))
    assert features.shape[1] == 128 and np.isfinite(features).all()
    ahead, in_actor = (rows(stores[n], "media", ["media_id"]) for n in ("ahead", "in_actor"))
    assert ahead.equals(in_actor), (ahead.to_pandas(), in_actor.to_pandas())


def test_the_actor_extracts_from_what_the_decode_task_prefetched(
    demo_set: Path, tmp_path: Path
) -> None:
    """The path of the test above, taken apart without Ray: a batch passed through
    ``prefetch_batch`` is extracted by ``extract_batch`` even once its media file is gone, so
    the frames come from the prefetched bytes; the same batch without them fails, naming the
    missing file."""
    import shutil

    from raypipe.extractors.registry import build_extractor
    from raypipe.media.manifest import load_manifest
    from raypipe.pipeline.extract import (
        build_records,
        extract_batch,
        extractor_specs,
        prefetch_batch,
    )

    manifest = pd.read_csv(demo_set)
    row = manifest[~manifest["media_id"].str.startswith("broken")].head(1).copy()
    clip = tmp_path / "clip.mp4"
    shutil.copy(demo_set.parent / row["path"].iloc[0], clip)
    row["media_id"], row["path"] = "clip", str(clip)
    row.to_csv(tmp_path / "one.csv", index=False)
    flags = {"manifest": str(tmp_path / "one.csv"), "out": str(tmp_path / "store")}
    config = load_config(ExtractConfig, None, ["video.fps=3", *_only("face_expression")], flags)
    video, specs = config.video.model_dump(), extractor_specs(config)
    store = FeatureStore(str(tmp_path / "store"))
    store.initialise()
    store.write_manifest(load_manifest(str(tmp_path / "one.csv"))[0])
    store.register_extractors(build_records(specs, video)[0])
    built = {name: build_extractor(name, options, video) for name, options in specs}
    batch = {
        "media_id": np.array(["clip"]),
        "path": np.array([str(clip)]),
        "todo": np.array(["face_expression"]),
    }
    ahead = prefetch_batch(batch, video, config.prefetch_max_frames, ["face_expression"])
    clip.unlink()

    done = extract_batch(built, store, video, config.fingerprint, ahead, "here")
    assert done["status"] == ["ok"], done["error"]
    version = store.extractors()["face_expression"].version
    frames = store.read_level("frames", "face_expression", version).to_pandas()
    assert len(frames) >= 5 and frames["has_face"].sum() >= 5
    again = extract_batch(built, store, video, config.fingerprint, batch, "here")
    assert again["status"] == ["failed"] and "clip.mp4" in again["error"][0], again


def test_fixed_manifest_rows_and_retried_failures_are_computed(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(demo_set)
    good = manifest[~manifest["media_id"].str.startswith("broken")].head(2).copy()
    good["path"] = [str((demo_set.parent / p).resolve()) for p in good["path"]]
    broken = manifest[manifest["media_id"] == "broken_empty"].copy()
    broken["path"] = [str((demo_set.parent / p).resolve()) for p in broken["path"]]
    typo = good.iloc[1]["media_id"]
    rows = pd.concat([good, broken])
    rows.loc[rows["media_id"] == typo, "label"] = "Angryy"
    path = tmp_path / "manifest.csv"
    rows.to_csv(path, index=False)
    overrides = _only("opensmile")
    flags = {"manifest": path, "out": str(tmp_path / "store")}
    first = run_extract(load_config(ExtractConfig, None, overrides, flags))
    store = FeatureStore(str(tmp_path / "store"))
    errors = store.status().set_index("media_id")["error"]
    assert errors[typo].startswith(f"manifest '{path}' row 2") and "Angryy" in errors[typo]
    assert (first.computed["ok"], first.computed["failed"]) == (
        1,
        1,
    )  # the good clip and the empty file

    rows.loc[rows["media_id"] == typo, "label"] = "Angry"  # the user fixes the label
    rows.to_csv(path, index=False)
    second = run_extract(load_config(ExtractConfig, None, overrides, flags))
    assert (second.computed["ok"], second.computed["failed"], second.skipped) == (1, 0, 2)
    assert store.status().set_index("media_id").loc[typo, "status"] == "ok"

    retried = run_extract(
        load_config(ExtractConfig, None, [*overrides, "retry_failed=true"], flags)
    )
    assert (retried.computed["ok"], retried.computed["failed"], retried.skipped) == (0, 1, 2)


def test_a_manifest_problem_never_replaces_a_good_result(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(demo_set)
    rows = manifest[~manifest["media_id"].str.startswith("broken")].head(3).copy()
    rows["path"] = [str((demo_set.parent / p).resolve()) for p in rows["path"]]
    path = tmp_path / "manifest.csv"
    rows.to_csv(path, index=False)
    overrides = _only("opensmile")
    flags = {"manifest": path, "out": str(tmp_path / "store")}
    run_extract(load_config(ExtractConfig, None, overrides, flags))
    store = FeatureStore(str(tmp_path / "store"))
    before = store.media_table("opensmile").set_index("media_id")
    assert (before["status"] == "ok").all() and len(before) == 3
    stored_manifest = store.read_manifest().set_index("media_id")

    # One file moves to an unmounted disk, one label gets a typo; the third row is untouched.
    moved, typo, fine = rows["media_id"].tolist()
    edited = rows.copy()
    edited.loc[edited["media_id"] == moved, "path"] = "/mnt/unmounted/clip.mp4"
    edited.loc[edited["media_id"] == typo, "label"] = "Afraid"
    edited.to_csv(path, index=False)
    again = run_extract(load_config(ExtractConfig, None, overrides, flags))

    assert again.manifest_issues == 2 and again.kept_despite_manifest == 2
    assert "stored results kept for 2 media" in again.line()
    after = store.media_table("opensmile").set_index("media_id")
    assert (after["status"] == "ok").all() and len(after) == 3
    for media_id in (moved, typo, fine):
        assert np.array_equal(after.loc[media_id, "features"], before.loc[media_id, "features"])
    kept_manifest = store.read_manifest().set_index("media_id")
    for media_id in (moved, typo):
        assert kept_manifest.loc[media_id, "path"] == stored_manifest.loc[media_id, "path"]
        assert kept_manifest.loc[media_id, "label"] == stored_manifest.loc[media_id, "label"]


def test_a_video_without_audio_is_no_audio_and_never_retried(
    ray_local: None, tmp_path: Path
) -> None:
    """A video with no audio stream: its openSMILE row is ``no_audio`` (done, not failed), and
    neither a re-run nor one with ``retry_failed`` computes it again."""
    from raypipe.media.writer import write_clip

    rng = np.random.default_rng(0)
    clip = tmp_path / "silent.mp4"
    write_clip(clip, rng.integers(0, 255, size=(10, 64, 64, 3), dtype=np.uint8), fps=10)
    path = tmp_path / "manifest.csv"
    pd.DataFrame([{"media_id": "silent", "path": str(clip)}]).to_csv(path, index=False)
    flags = {"manifest": path, "out": str(tmp_path / "store")}
    first = run_extract(load_config(ExtractConfig, None, _only("opensmile"), flags))
    assert first.computed == {"no_audio": 1}, first.line()
    store = FeatureStore(str(tmp_path / "store"))
    version = store.extractors()["opensmile"].version
    row = store.index("opensmile", version).set_index("media_id").loc["silent"]
    assert row["status"] == "no_audio" and "has no audio stream" in row["error"]
    assert store.media_table("opensmile")["features"].isna().all()

    def written() -> dict[Path, int]:
        """The opensmile index and data files, with their modification times."""
        files = Path(store.root).glob("*/extractor=opensmile/*/*.parquet")
        return {p: p.stat().st_mtime_ns for p in files}

    before = written()

    for extra in ([], ["retry_failed=true"]):
        again = run_extract(load_config(ExtractConfig, None, [*_only("opensmile"), *extra], flags))
        assert (sum(again.computed.values()), again.skipped) == (0, 1), (extra, again.line())
        rows = store.index("opensmile", version).set_index("media_id")
        assert rows.loc["silent", "written_at"] == row["written_at"]
        assert rows.loc["silent", "status"] == "no_audio"
    assert written() == before and len(before) == 2  # an index file and a media file
