"""A decoder that hangs between frame windows, and one that dies in the middle of a decode, in a
real extraction job on the shared local Ray: the decoder child really sleeps or kills itself
with SIGSEGV after sending its first window (the test-only rules tests/conftest.py sets before
Ray starts). The extraction actor and the job go on: the bad files are recorded as failed with
the reason, every other media is stored, and a re-run resumes instead of starting over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.media.decoder_process import FAULT_ENV
from raypipe.media.writer import write_clip
from raypipe.pipeline.extract import run_extract
from raypipe.store.feature_store import FeatureStore
from tests.extract_options import only_extractors as _only

pytestmark = pytest.mark.integration

HANGS = "decoder-hangs-midstream"
CRASHES = "decoder-crashes-midstream"
#: Good media around the bad ones, all in one batch of one actor: the media after a bad one
#: are handled by the same actor call that met the fault.
ORDER = ("good_a", HANGS, "good_b", CRASHES, "good_c")


def _clip(path: Path, shade: int) -> Path:
    """A 1 s clip of 10 frames (64 x 48 pixels, 10 fps), no faces: three windows of 4 frames."""
    frames = np.full((10, 48, 64, 3), shade, np.uint8)
    frames[:, :12, :16] = 255
    for t in range(10):
        frames[t, 24:, :, 0] = t * 20  # frames differ, so each is really decoded
    write_clip(path, frames, fps=10)
    return path


def test_a_decoder_hanging_or_crashing_mid_stream_fails_its_file_alone(
    ray_local: None, tmp_path: Path
) -> None:
    import os

    rules = os.environ.get(FAULT_ENV, "")
    assert f"hang@1:{HANGS}" in rules and f"crash@1:{CRASHES}" in rules, rules
    rows = []
    for i, media_id in enumerate(ORDER):
        rows.append({"media_id": media_id, "path": str(_clip(tmp_path / f"{media_id}.mp4", i))})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    store_root = str(tmp_path / "store")
    overrides = [
        *_only("face_hog"),
        "face_hog.enabled=true",
        "video.fps=10",
        "video.window_frames=4",
        # Above a fresh decoder child's start on a loaded machine (its first answer includes
        # starting Python), which the first media and the one after each fault wait for.
        "video.decode_timeout_s=20",
        "workers=1",
        f"batch_size={len(ORDER)}",
        "compact=false",
    ]
    config = load_config(
        ExtractConfig, None, overrides, {"manifest": str(manifest), "out": store_root}
    )

    summary = run_extract(config)  # returns: the job survived both faults

    assert summary.computed == {"ok": 3, "failed": 2}, summary.computed
    status = FeatureStore(store_root).status().set_index("media_id")
    assert set(status.index) == set(ORDER)
    for media_id in ("good_a", "good_b", "good_c"):
        assert status.loc[media_id, "status"] == "ok"
        assert status.loc[media_id, "frames"] == 10
    hung, crashed = status.loc[HANGS], status.loc[CRASHES]
    assert hung["status"] == "failed" and crashed["status"] == "failed"
    assert f"{HANGS}.mp4: the decoder sent nothing for 20 s" in hung["error"]
    assert f"{CRASHES}.mp4: the decoder process crashed on this file" in crashed["error"]
    assert "signal SIGSEGV" in crashed["error"]

    # A re-run resumes: nothing stored is computed again, and the failed rows stay failed
    # until asked (retry_failed) rather than costing every re-run a decode timeout.
    before = {p: p.stat().st_mtime_ns for p in Path(store_root).rglob("*.parquet")}
    again = run_extract(config)
    assert sum(again.computed.values()) == 0 and again.skipped == len(ORDER)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert FeatureStore(store_root).status().set_index("media_id")["status"].to_dict() == {
        m: "failed" if m in (HANGS, CRASHES) else "ok" for m in ORDER
    }
