"""Benchmark recipe: the feature store at corpus scale (write, plan, status, read).

    python jobs/benchmark_store.py --media 100000 --extractors 4
    python jobs/benchmark_store.py --media 1000000 --extractors 10 --frames 2

Makes N small media files (a few bytes each, so the manifest checks and fingerprints are real)
and a CSV manifest, then builds a synthetic store through the write path extraction uses
(results of ``--batch`` media per write, as an actor with ``batch_size = --batch`` writes them),
compacts it as ``raypipe extract`` does when it ends, and times:

- ``write_s``: every write (index and data files), then ``compact_s`` for the compaction;
- ``plan_s``: what ``raypipe extract`` does before its first media on this store (read and
  check the manifest, record it and the extractor versions, stat every file, read the index,
  plan): a re-run with nothing to compute;
- ``status_s``: ``raypipe store status STORE --json`` in a subprocess (Python start included);
- ``read_frames_s``: one frame-level extractor's frame table for all media, into pandas.

Half the extractors are frame-level (``--frames`` rows of 32 float32 per media), half
media-level (88 float32 per media, like openSMILE functionals). The last line printed is one
JSON object with every figure. Temporary files are removed unless ``--keep`` is given (a
``--store`` URI is written but never removed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raypipe.media.manifest import load_manifest
from raypipe.pipeline.extract import prepare_job
from raypipe.store.compaction import compact
from raypipe.store.feature_store import ExtractorRecord, FeatureStore, MediaResult
from raypipe.store.fingerprint import fingerprint
from raypipe.store.schema import FRAME_SCHEMA, STATUS_OK

log = logging.getLogger("raypipe.benchmark_store")
FRAME_DIM = 32
MEDIA_DIM = 88


def _records(count: int) -> list[ExtractorRecord]:
    records = []
    for i in range(count):
        frame = i % 2 == 0
        dim = FRAME_DIM if frame else MEDIA_DIM
        level = "frame" if frame else "media"
        records.append(ExtractorRecord(f"synthetic_{i}", "v1", level, dim, "visual", {}))
    return records


def _make_media(root: Path, media: int) -> pd.DataFrame:
    """N tiny files in folders of 1,000 and their manifest rows."""
    ids, paths = [], []
    for start in range(0, media, 1000):
        folder = root / f"{start // 1000:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(start + 1000, media)):
            path = folder / f"clip{i:07d}.mp4"
            path.write_bytes(i.to_bytes(8, "little"))
            ids.append(f"clip{i:07d}")
            paths.append(str(path))
    labels = np.array(["Angry", "Happy", "Sad", "Neutral"])[np.arange(media) % 4]
    return pd.DataFrame({"media_id": ids, "path": paths, "label": labels, "split": "train"})


def _frame_rows(ids: list[str], frames: int, rng: np.random.Generator) -> list[pa.Table]:
    features = rng.standard_normal((len(ids) * frames, FRAME_DIM), dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(features.ravel()), FRAME_DIM)
    table = pa.table(
        {
            "media_id": np.repeat(np.array(ids, dtype=object), frames),
            "frame_index": np.tile(np.arange(frames, dtype=np.int32), len(ids)),
            "timestamp_s": np.tile(np.arange(frames, dtype=np.float32) / 5, len(ids)),
            "has_face": np.ones(len(ids) * frames, dtype=bool),
            "face_score": np.full(len(ids) * frames, 0.9, dtype=np.float32),
            "box": pa.FixedSizeListArray.from_arrays(
                pa.array(np.zeros(len(ids) * frames * 4, dtype=np.float32)), 4
            ),
            "features": column.cast(pa.list_(pa.float32())),
        }
    ).cast(FRAME_SCHEMA)
    return [table.slice(i * frames, frames) for i in range(len(ids))]


def build(
    store: FeatureStore,
    manifest: pd.DataFrame,
    records: list[ExtractorRecord],
    frames: int,
    batch: int,
) -> float:
    """Write every (media, extractor) result, ``batch`` media per write; returns seconds."""
    rng = np.random.default_rng(0)
    store.initialise()
    store.write_manifest(manifest)
    store.register_extractors(records)
    ids = manifest["media_id"].tolist()
    paths = manifest["path"].tolist()
    sources = [fingerprint(p) for p in paths]
    start = time.perf_counter()
    for first in range(0, len(ids), batch):
        chunk = ids[first : first + batch]
        results = []
        for record in records:
            per_media = _frame_rows(chunk, frames, rng) if record.level == "frame" else None
            for j, media_id in enumerate(chunk):
                row = {"status": STATUS_OK, "seconds": 0.5, "duration_s": 2.0, "coverage": 1.0}
                if per_media is None:
                    row["features"] = rng.standard_normal(MEDIA_DIM, dtype=np.float32)
                else:
                    row.update(frames=frames, face_frames=frames)
                results.append(
                    MediaResult(
                        record.name,
                        record.version,
                        media_id,
                        row,
                        per_media[j] if per_media is not None else None,
                        path=paths[first + j],
                        source=sources[first + j],
                    )
                )
        store.write_results(results)
        if first // batch % 200 == 0:
            log.info("written %d / %d media", first + len(chunk), len(ids))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", type=int, default=20000)
    parser.add_argument("--extractors", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4, help="Frame rows per media.")
    parser.add_argument("--batch", type=int, default=256, help="Media per write.")
    parser.add_argument("--store", default=None, help="Store URI (default: a temporary folder).")
    parser.add_argument(
        "--keep", action="store_true", help="Keep the media, manifest and store; print where."
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    scratch = Path(tempfile.mkdtemp(prefix="raypipe-store-bench-"))
    try:
        start = time.perf_counter()
        manifest = _make_media(scratch / "media", args.media)
        manifest_path = scratch / "manifest.csv"
        manifest.to_csv(manifest_path, index=False)
        make_s = time.perf_counter() - start
        uri = args.store or str(scratch / "store")
        store = FeatureStore(uri)
        records = _records(args.extractors)
        write_s = build(store, manifest, records, args.frames, args.batch)
        files_before = sum(1 for _ in store.files.walk())
        start = time.perf_counter()
        compact(store)
        compact_s = time.perf_counter() - start
        files = sum(1 for _ in store.files.walk())

        start = time.perf_counter()
        rows, issues = load_manifest(manifest_path)
        plan, _ = prepare_job(FeatureStore(uri), rows, issues, records, str(manifest_path), False)
        plan_s = time.perf_counter() - start
        assert not plan.items, "a re-run of a complete store must have nothing to compute"

        start = time.perf_counter()
        shown = subprocess.run(
            [shutil.which("raypipe") or "raypipe", "store", "status", uri, "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        status_s = time.perf_counter() - start
        summary = json.loads(shown.stdout)["extractors"]
        assert all(s["ok"] == args.media for s in summary), summary

        start = time.perf_counter()
        table = FeatureStore(uri).frame_table(records[0].name)
        read_frames_s = time.perf_counter() - start
        assert len(table) == args.media * args.frames
    finally:
        if args.keep:
            log.info("kept the media, manifest.csv and store under %s", scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "media": args.media,
        "extractors": args.extractors,
        "frames": args.frames,
        "batch": args.batch,
        "files_before_compaction": files_before,
        "files": files,
        "objects_per_1000_media": round(files / args.media * 1000, 2),
        "make_media_s": round(make_s, 2),
        "write_s": round(write_s, 2),
        "compact_s": round(compact_s, 2),
        "plan_s": round(plan_s, 2),
        "status_s": round(status_s, 2),
        "read_frames_s": round(read_frames_s, 2),
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
