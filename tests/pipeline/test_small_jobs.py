"""A small extraction job runs in its own process without starting Ray (issue 15's start-up
cut): `raypipe extract` on a handful of media builds the models once, in the driver, and
stores what a job on Ray stores; a failing file still fails alone; the rule that picks the
path is checked case by case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.pipeline.extract import run_extract, runs_in_process
from raypipe.store.feature_store import FeatureStore
from tests.extract_options import only_extractors as only

REPO = Path(__file__).resolve().parents[2]
EXTRACTORS = ("face_expression", "opensmile")


def _subset(demo_set: Path, folder: Path) -> Path:
    """Three good clips and the empty file of the demo set, paths made absolute."""
    manifest = pd.read_csv(demo_set)
    good = manifest[~manifest["media_id"].str.startswith("broken")].head(3)
    rows = pd.concat([good, manifest[manifest["media_id"] == "broken_empty"]])
    rows["path"] = [str((demo_set.parent / p).resolve()) for p in rows["path"]]
    path = folder / "small.csv"
    rows.to_csv(path, index=False)
    return path


def _features(store: str, extractor: str) -> pd.DataFrame:
    """Stored vectors of an extractor: its frame rows, or its media rows for a media-level
    one (openSMILE functionals), in a fixed order."""
    frames = FeatureStore(store).frame_table(extractor)
    if frames.empty:
        media = FeatureStore(store).media_table(extractor)
        frames = media[media["features"].notna()].assign(frame_index=0)
    return frames.sort_values(["media_id", "frame_index"]).reset_index(drop=True)


#: `raypipe extract` in a fresh process, as the command runs it; then the decoder children it
#: left running in that process are listed on stderr.
RUN_CLI = """
import sys
from raypipe.cli import main
from raypipe.media import decoder_process

sys.argv[0] = "raypipe"
try:
    main()
except SystemExit as end:
    code = end.code
else:
    code = 0
left = [decoder.pid for decoder in decoder_process._SHARED.values() if decoder.pid]
print("decoder children left:", left, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.integration
@pytest.mark.slow
def test_a_small_job_runs_in_process_and_stores_what_ray_stores(
    ray_local: None, demo_set: Path, tmp_path: Path
) -> None:
    manifest = _subset(demo_set, tmp_path)
    overrides = ["video.fps=3", *only(*EXTRACTORS)]
    here, on_ray = str(tmp_path / "here"), str(tmp_path / "ray")
    # A fresh process, as `raypipe extract` runs: no Ray there, so 4 media stay in it.
    args = [sys.executable, "-c", RUN_CLI, "extract", "--manifest", str(manifest)]
    args += ["--out", here, "--json"]
    for override in overrides:
        args += ["--set", override]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "extracting 4 media in this process" in done.stderr, done.stderr[-4000:]
    assert "starting an embedded local Ray" not in done.stderr
    assert "decoder children left: []" in done.stderr, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert printed["nodes"] == {"local": 8} and printed["computed"] == {"ok": 6, "failed": 2}

    # The same job on this session's Ray (already running, so it is used).
    config = load_config(ExtractConfig, None, overrides, {"manifest": manifest, "out": on_ray})
    summary = run_extract(config)
    assert "local" not in summary.nodes and sum(summary.nodes.values()) == 8

    rows = {
        name: FeatureStore(name).status(problems_only=False).sort_values(["media_id", "extractor"])
        for name in (here, on_ray)
    }
    columns = ["media_id", "extractor", "status", "error", "version", "n_frames", "face_frames"]
    columns = [c for c in columns if c in rows[here].columns]
    pd.testing.assert_frame_equal(
        rows[here][columns].reset_index(drop=True), rows[on_ray][columns].reset_index(drop=True)
    )
    failed = rows[here][rows[here]["status"] == "failed"]
    assert set(failed["media_id"]) == {"broken_empty"}
    for extractor in EXTRACTORS:
        mine, theirs = _features(here, extractor), _features(on_ray, extractor)
        assert len(mine) > 0
        keys = ["media_id", "frame_index"]
        assert mine[keys].equals(theirs[keys])
        # The actor runs torch on one thread, this process on all cores: sums may round
        # differently, nothing more.
        np.testing.assert_allclose(
            np.stack(mine["features"]), np.stack(theirs["features"]), rtol=1e-4, atol=1e-5
        )


@pytest.mark.integration
def test_which_jobs_run_in_process(ray_local: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def config(*overrides: str) -> ExtractConfig:
        return load_config(ExtractConfig, None, list(overrides), {"manifest": "m.csv", "out": "s"})

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # This session's Ray is running: it is used, whatever the job's size.
    assert not runs_in_process(config(), 3)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    assert runs_in_process(config(), 1) and runs_in_process(config(), 8)
    assert not runs_in_process(config(), 9)
    assert not runs_in_process(config(), 0)  # nothing to compute: no path at all
    assert runs_in_process(config("local_max_media=20"), 20)
    assert not runs_in_process(config("local_max_media=0"), 1)
    assert not runs_in_process(config("workers=1"), 1)
    assert not runs_in_process(config("decode_tasks=1"), 1)
    assert not runs_in_process(config("ray.address=127.0.0.1:6379"), 1)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not runs_in_process(config(), 1)
