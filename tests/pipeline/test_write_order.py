"""The order of a store write, checked with real faults (docs/store.md, docs/reliability.md): a
media's crops and frame rows are written before its media row, and the index row written last
is the commit. A write that fails, or a process killed, between them leaves no row claiming
data that is not there, and the re-run computes that media again, once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.pipeline.extract import run_extract
from raypipe.store.feature_store import FeatureStore
from raypipe.store.verify import verify
from tests.extract_options import only_extractors as _only

pytestmark = pytest.mark.integration

CLIP = "angry_000"


def _one_clip(demo_set: Path, tmp_path: Path) -> Path:
    """A manifest of one demo clip (a face and a voice)."""
    path = tmp_path / "manifest.csv"
    clip = demo_set.parent / "media" / f"{CLIP}.mp4"
    pd.DataFrame([{"media_id": CLIP, "path": str(clip)}]).to_csv(path, index=False)
    return path


def _parquet_files(store: Path, level: str, extractor: str) -> list[Path]:
    return sorted((store / level / f"extractor={extractor}").rglob("*.parquet"))


def test_crops_are_written_before_the_media_row(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    """A file in the way of the crops folder, then of the media folder: the job stops with the
    write error each time, no media row or index row claims the crops, and the crops were on
    disk before the media row failed. Cleared, the re-run computes the media with its crops."""
    store_path = tmp_path / "store"
    overrides = [
        "video.fps=2",
        "face_tracks.enabled=true",
        "face_tracks.store_crops=true",
        "face_tracks.crop_size=48",
        *_only("face_tracks"),
    ]
    flags = {"manifest": _one_clip(demo_set, tmp_path), "out": str(store_path)}
    config = load_config(ExtractConfig, None, overrides, flags)
    store = FeatureStore(str(store_path))
    store.initialise()

    for level in ("crops", "media"):
        in_the_way = store_path / level / "extractor=face_tracks"
        in_the_way.parent.mkdir(parents=True, exist_ok=True)
        in_the_way.write_text("not a folder")
        with pytest.raises(Exception, match="Cannot write") as failed:
            run_extract(config)
        assert f"{level}/extractor=face_tracks" in str(failed.value)
        in_the_way.unlink()
        version = store.extractors()["face_tracks"].version
        assert store.index("face_tracks", version).empty  # nothing committed
        assert _parquet_files(store_path, "media", "face_tracks") == []
        assert store.status().set_index("media_id").loc[CLIP, "status"] == "missing"
        assert store.crop_table("face_tracks").empty  # reads follow the index only
    # The media write failed after the crops were written: they are there, named by no row.
    (orphan,) = _parquet_files(store_path, "crops", "face_tracks")
    assert set(pd.read_parquet(orphan)["media_id"]) == {CLIP}

    summary = run_extract(config)
    assert summary.computed == {"ok": 1}, summary.line()
    version = store.extractors()["face_tracks"].version
    row = store.index("face_tracks", version).set_index("media_id").loc[CLIP]
    assert (store_path / row["crops_file"]).is_file() and row["crops_file"] != str(
        orphan.relative_to(store_path)
    )
    crops = store.crop_table("face_tracks")
    assert len(crops) >= 3 and set(crops["media_id"]) == {CLIP}
    assert len(crops) == len(pd.read_parquet(orphan))  # the same faces as the failed run
    assert verify(store).ok


#: Runs in a child process: one media's results computed with the real extractor (as an
#: extraction actor does) and written through ``FeatureStore.write_results``; the process kills
#: itself with SIGKILL the moment the write reaches the media file (the store's one file-writing
#: call, ``StoreFiles.write_bytes``, with a ``media/`` path), after the frames file.
_KILLED_WRITER = """
import json, os, signal, sys
from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.extractors.process import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.media.context import MediaContext
from raypipe.media.manifest import load_manifest
from raypipe.pipeline.extract import ResultBuffer, build_records, extractor_specs
from raypipe.store.feature_store import FeatureStore

overrides, flags = json.loads(sys.argv[1])
config = load_config(ExtractConfig, None, overrides, flags)
video = config.video.model_dump()
specs = extractor_specs(config)
store = FeatureStore(config.out)
store.initialise()
manifest, _ = load_manifest(config.manifest)
store.write_manifest(manifest)
store.register_extractors(build_records(specs, video)[0])
extractors = [build_extractor(name, options, video) for name, options in specs]
buffer = ResultBuffer()
for media_id, path in zip(manifest["media_id"], manifest["path"]):
    process_media(MediaContext(media_id, path, **video), extractors, buffer)

def kill_at_media_write(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "write_bytes":
        if str(frame.f_locals.get("relative", "")).startswith("media/"):
            os.kill(os.getpid(), signal.SIGKILL)

sys.setprofile(kill_at_media_write)
store.write_results(buffer.results)
print("the write finished; it should have been killed")
"""


def test_frame_rows_without_their_media_row_are_recomputed_once(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    """A writer killed (SIGKILL) after one media's frames file and before its media row: the
    media is not done, the re-run computes it, and reads see its frame rows once, equal to the
    ones the killed writer had computed."""
    store_path = tmp_path / "store"
    overrides = _only("opensmile_lld")
    flags = {"manifest": str(_one_clip(demo_set, tmp_path)), "out": str(store_path)}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, json.dumps([overrides, flags])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    (orphan,) = _parquet_files(store_path, "frames", "opensmile_lld")
    written = pd.read_parquet(orphan).sort_values("frame_index")
    assert set(written["media_id"]) == {CLIP} and len(written) > 100
    assert _parquet_files(store_path, "media", "opensmile_lld") == []
    store = FeatureStore(str(store_path))
    assert store.status().set_index("media_id").loc[CLIP, "status"] == "missing"
    assert store.frame_table("opensmile_lld").empty

    config = load_config(ExtractConfig, None, overrides, flags)
    summary = run_extract(config)
    assert (summary.computed, summary.skipped) == ({"ok": 1}, 0), summary.line()
    frames = store.frame_table("opensmile_lld").sort_values("frame_index")
    assert len(frames) == len(written) and frames["frame_index"].is_unique
    np.testing.assert_array_equal(frames["timestamp_s"], written["timestamp_s"])
    np.testing.assert_array_equal(np.stack(frames["features"]), np.stack(written["features"]))
    assert verify(store).ok
    # The killed writer's frames file is named by no index row; `store gc` removes it, after
    # which a plain read of the folder also sees the media's frames once.
    assert orphan.exists()
    from raypipe.store.compaction import collect_garbage

    collect_garbage(store, min_age_s=0)
    assert not orphan.exists()
    plain = pd.read_parquet(store_path / "frames" / "extractor=opensmile_lld")
    assert len(plain) == len(written)
