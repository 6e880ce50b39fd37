from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raypipe.errors import RaypipeError
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from tests.store.rows import frame_rows


@pytest.fixture
def store(tmp_path: Path) -> FeatureStore:
    s = FeatureStore(str(tmp_path / "store"))
    s.initialise()
    s.register_extractors(
        [
            ExtractorRecord("vis", "v1", "frame", 2, "visual", {}),
            ExtractorRecord("aud", "a1", "media", 3, "audio", {}),
        ]
    )
    s.write_manifest(
        pd.DataFrame(
            {
                "media_id": ["m/1", "m/2", "m/3"],
                "path": ["a", "b", "c"],
                "label": ["Happy", "Sad", None],
                "split": ["train", "val", None],
            }
        )
    )
    return s


def test_rewrite_replaces_never_duplicates(store: FeatureStore) -> None:
    for _ in range(2):
        store.write_result(
            "vis",
            "v1",
            "m/1",
            {"status": "ok", "frames": 3, "face_frames": 3},
            frame_rows("m/1", 3),
        )
    assert len(store.media_table("vis")) == 1
    assert len(store.frame_table("vis")) == 3
    assert store.done_media("vis", "v1") == {"m/1"}
    assert store.done_media("vis", "v2") == set()


def test_status_has_ok_failed_missing_and_counts(store: FeatureStore) -> None:
    store.write_result(
        "vis", "v1", "m/1", {"status": "ok", "frames": 3, "face_frames": 2}, frame_rows("m/1", 3)
    )
    store.write_result("vis", "v1", "m/2", {"status": "failed", "error": "m2: empty file"})
    store.write_result("aud", "a1", "m/1", {"status": "ok", "features": [1.0, 2.0, 3.0]})
    status = store.status()
    vis = status[status["extractor"] == "vis"].set_index("media_id")
    assert vis.loc["m/1", "status"] == "ok" and vis.loc["m/1", "face_frames"] == 2
    assert vis.loc["m/2", "status"] == "failed" and vis.loc["m/2", "error"] == "m2: empty file"
    assert vis.loc["m/3", "status"] == "missing"
    aud = status[status["extractor"] == "aud"].set_index("media_id")
    assert pd.isna(aud.loc["m/1", "frames"]) and set(aud["status"]) == {"ok", "missing"}
    assert status.iloc[0]["status"] == "failed"  # problems first


def test_readable_without_raypipe(store: FeatureStore, tmp_path: Path) -> None:
    store.write_result(
        "vis", "v1", "m/1", {"status": "ok", "frames": 3, "face_frames": 3}, frame_rows("m/1", 3)
    )
    store.write_result("aud", "a1", "m/1", {"status": "ok", "features": [1.0, 2.0, 3.0]})
    media = pd.read_parquet(tmp_path / "store" / "media")
    assert set(media["extractor"].astype(str)) == {"vis", "aud"}
    frames = pq.read_table(tmp_path / "store" / "frames").to_pandas()
    assert len(frames) == 3 and set(frames["version"].astype(str)) == {"v1"}
    assert np.allclose(np.stack(frames.sort_values("frame_index")["features"])[:, 0], [0, 1, 2])


def test_no_temporary_files_left(store: FeatureStore, tmp_path: Path) -> None:
    store.write_result("aud", "a1", "m/1", {"status": "ok", "features": [1.0, 2.0, 3.0]})
    assert not [p for p in (tmp_path / "store").rglob(".tmp-*")]


def test_manifest_upsert(store: FeatureStore) -> None:
    store.write_manifest(
        pd.DataFrame(
            {
                "media_id": ["m/2", "m/4"],
                "path": ["b2", "d"],
                "label": ["Fear", "Angry"],
                "split": ["test", "test"],
            }
        )
    )
    manifest = store.read_manifest().set_index("media_id")
    assert sorted(manifest.index) == ["m/1", "m/2", "m/3", "m/4"]
    assert manifest.loc["m/2", "label"] == "Fear"


def test_not_a_store_and_unknown_extractor(tmp_path: Path, store: FeatureStore) -> None:
    with pytest.raises(RaypipeError, match="not a raypipe feature store"):
        FeatureStore(str(tmp_path / "nothing")).require()
    with pytest.raises(RaypipeError, match="no extractor 'face'"):
        store.media_table("face")


def test_status_carries_the_visual_quality_summary(store: FeatureStore) -> None:
    store.write_result(
        "vis",
        "v1",
        "m/1",
        {
            "status": "ok",
            "frames": 3,
            "face_frames": 2,
            "tracks": 1,
            "face_score": 0.97,
            "probe_s": 0.01,
            "decode_s": 0.2,
            "faces_s": 0.5,
            "embed_s": 0.1,
        },
        frame_rows("m/1", 3),
    )
    store.write_result("aud", "a1", "m/1", {"status": "ok", "features": [1.0, 2.0, 3.0]})
    status = store.status().set_index(["media_id", "extractor"])
    row = status.loc[("m/1", "vis")]
    assert row["tracks"] == 1 and row["face_score"] == pytest.approx(0.97)
    assert row["decode_s"] == pytest.approx(0.2) and row["faces_s"] == pytest.approx(0.5)
    assert pd.isna(status.loc[("m/1", "aud"), "tracks"])
    assert pd.isna(status.loc[("m/3", "vis"), "decode_s"])  # missing rows have no summary


def test_crop_pixels_round_trip(store: FeatureStore) -> None:
    from raypipe.store.schema import CROP_SCHEMA

    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    crops = pa.Table.from_pylist(
        [
            {
                "media_id": "m/1",
                "frame_index": 0,
                "timestamp_s": 0.0,
                "face_index": 0,
                "track_id": 0,
                "main_track": True,
                "size": 4,
                "pixels": pixels.tobytes(),
            }
        ],
        schema=CROP_SCHEMA,
    )
    store.write_result("vis", "v1", "m/1", {"status": "ok"}, frame_rows("m/1", 1), crops)
    table = store.crop_table("vis")
    back = np.frombuffer(table["pixels"].iloc[0], np.uint8).reshape(4, 4, 3)
    np.testing.assert_array_equal(back, pixels)
