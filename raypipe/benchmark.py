"""Extraction throughput: raypipe on Ray Data against a plain sequential loop, same media.

Both paths run the same extractors on the same files into fresh stores, in one process run, so
the ratio compares like with like on this machine.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from raypipe.extraction import process_media
from raypipe.extractors.registry import build_extractor
from raypipe.job_configs import ExtractConfig
from raypipe.manifest import load_manifest
from raypipe.media.context import MediaContext
from raypipe.pipeline.extract import extractor_specs, run_extract
from raypipe.store.feature_store import FeatureStore

log = logging.getLogger(__name__)


def machine() -> str:
    """One line describing this machine: CPU model, cores, memory, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{memory_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = "?"
    return f"{cpu}, {os.cpu_count()} cores, {memory} RAM, Python {platform.python_version()}"


def benchmark_extraction(config: ExtractConfig, limit: int | None = None) -> dict[str, Any]:
    """Time a sequential in-process loop and raypipe's Ray Data pipeline on the same media.

    Returns media/s and frames/s of each path and their ratio.
    """
    manifest, _ = load_manifest(config.manifest)
    if limit is not None:
        manifest = manifest.head(limit)
    results: dict[str, Any] = {"machine": machine(), "media": len(manifest)}
    with tempfile.TemporaryDirectory() as scratch:
        subset = Path(scratch) / "manifest.csv"
        manifest.to_csv(subset, index=False)

        store = FeatureStore(str(Path(scratch) / "sequential"))
        store.initialise()
        start = time.perf_counter()
        extractors = [build_extractor(name, options) for name, options in extractor_specs(config)]
        for row in manifest.itertuples(index=False):
            process_media(
                MediaContext(row.media_id, row.path, **config.video.model_dump()), extractors, store
            )
        sequential = time.perf_counter() - start
        frames = sum(
            len(store.frame_table(e.name, e.version)) for e in extractors if e.level == "frame"
        )

        ray_store = str(Path(scratch) / "raypipe")
        start = time.perf_counter()
        run_extract(config.model_copy(update={"manifest": subset, "out": ray_store}))
        parallel = time.perf_counter() - start

    for name, seconds in (("sequential", sequential), ("raypipe", parallel)):
        results[name] = {
            "seconds": round(seconds, 2),
            "media_per_s": round(len(manifest) / seconds, 3),
            "frames_per_s": round(frames / seconds, 2),
        }
    results["speedup"] = round(sequential / parallel, 2)
    return results


def as_markdown(results: dict[str, Any]) -> str:
    """A Markdown table of :func:`benchmark_extraction` results."""
    rows = pd.DataFrame([{"path": name, **results[name]} for name in ("sequential", "raypipe")])
    header = "| " + " | ".join(rows.columns) + " |"
    lines = [header, "|" + "---|" * len(rows.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows.itertuples(index=False)]
    return "\n".join(lines)
