"""Benchmark recipe: extraction throughput of raypipe against a sequential loop, same media.

    python jobs/benchmark.py --manifest raypipe-demo/data/manifest.csv --limit 40 --memory 60,600
    python jobs/benchmark.py --demo-seconds 10 --limit 40

--extractors (default face_expression) names the extractors to run; every other one is off.
--demo-seconds S generates the demo clips (6 per class, S seconds each) into a temporary
folder instead of reading --manifest; --face-motion generates the face-motion set (8 clips of
animated real photographs: pans, zooms, rotation, faces entering and leaving, shot cuts,
several people; raypipe.media.face_motion_set).

With a face extractor among --extractors, the visual path per core is also measured
(raypipe.pipeline.face_paths): MTCNN on every sampled frame against the configured detector and
keyframe interval, on the same frames, with face recall against the former.

`ratio_to_sequential` compares `raypipe extract` run as a user runs it (a fresh process, timed
from its start: Ray's start included where the job needs Ray; a job of at most
local_max_media media runs in that process without Ray) with the sequential loop, also timed
from process start. The `raypipe` row is run_extract on this process's already started Ray.

Prints Markdown tables and a JSON line (machine, load, media/s, frames/s, ratios to the
sequential loop, each stage alone; with --memory, the peak memory of one worker extracting
generated clips of those lengths in seconds) for docs/benchmarks.md. Starts an embedded local
Ray sized to the machine (or joins --address).
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path

from raypipe.config import ExtractConfig
from raypipe.config.base import load_config
from raypipe.extractors.registry import EXTRACTORS
from raypipe.media.manifest import load_manifest
from raypipe.pipeline.benchmark import (
    as_markdown,
    benchmark_extraction,
    command_seconds,
    memory_by_length,
)
from raypipe.pipeline.face_paths import compare_face_paths
from raypipe.pipeline.runtime import ray_session

#: Face extractors whose visual path per core is measured (the first one among --extractors).
FACE_EXTRACTORS = ("face_expression", "face_tracks", "face_hog", "face_lbp")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--demo-seconds", type=float, default=None, help="generate demo clips")
    parser.add_argument(
        "--face-motion", action="store_true", help="generate the face-motion set of real photos"
    )
    parser.add_argument("--limit", type=int, default=None, help="use the first N media")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--address", default=None)
    parser.add_argument("--extractors", default="face_expression", help="comma-separated names")
    parser.add_argument(
        "--memory", default="", help="comma-separated clip lengths in seconds, e.g. 60,600"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.demo_seconds:
        from raypipe.media.demo_set import make_demo_dataset

        folder = Path(tempfile.mkdtemp(prefix="raypipe-bench-"))
        args.manifest = make_demo_dataset(folder, clips_per_class=6, duration_s=args.demo_seconds)
    if args.face_motion:
        from raypipe.media.face_motion_set import make_face_motion_set

        args.manifest = make_face_motion_set(Path(tempfile.mkdtemp(prefix="raypipe-faces-")))
    if args.manifest is None:
        parser.error("give --manifest or --demo-seconds")
    flags = {"manifest": args.manifest, "out": "unused"}
    chosen = set(args.extractors.split(","))
    only = [
        f"{name}.enabled={str(name in chosen).lower()}"
        for name in EXTRACTORS
        if name in ExtractConfig.model_fields
    ]
    overrides = [
        *only,
        *args.overrides,
        *([f"ray.address={args.address}"] if args.address else []),
    ]
    config = load_config(ExtractConfig, args.config, overrides, flags)
    report = logging.getLogger("benchmark")
    # `raypipe extract` as a user runs it, before this process starts Ray.
    command = command_seconds(config, args.limit)
    with ray_session(config.ray):
        results = benchmark_extraction(config, args.limit, command)
    # raypipe as a user runs it against the loop, both timed from process start.
    results["ratio_to_sequential"] = results["raypipe_command"]["ratio_to_sequential"]
    face_extractor = next((n for n in FACE_EXTRACTORS if n in chosen), None)
    if face_extractor is not None:
        manifest, _ = load_manifest(config.manifest)
        manifest = manifest if args.limit is None else manifest.head(args.limit)
        paths = compare_face_paths(config, manifest, face_extractor)
        report.info("visual path per core: %s", paths)
        results.update({k: v for k, v in paths.items() if k != "frames"})
    report.info("machine: %s", results["machine"])
    report.info("\n%s", as_markdown(results))
    if args.memory:
        lengths = tuple(int(v) for v in args.memory.split(","))
        results["memory"] = memory_by_length(config, lengths)
        for length, row in results["memory"].items():
            report.info("%d s clip: %s", length, row)
    report.info("\n%s", json.dumps(results))
