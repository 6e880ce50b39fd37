"""Benchmark recipe: extraction throughput of raypipe against a sequential loop, same media.

    python jobs/benchmark.py --manifest raypipe-demo/data/manifest.csv --limit 40

Prints a Markdown table and a JSON line (machine, media/s, frames/s, speedup) for
docs/benchmarks.md. Starts an embedded local Ray sized to the machine (or joins --address).
"""

import argparse
import json
import logging
from pathlib import Path

from raypipe.benchmark import as_markdown, benchmark_extraction
from raypipe.config import load_config
from raypipe.job_configs import ExtractConfig
from raypipe.runtime import ray_session

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="use the first N media")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--address", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    flags = {"manifest": args.manifest, "out": "unused"}
    overrides = [*args.overrides, *([f"ray.address={args.address}"] if args.address else [])]
    config = load_config(ExtractConfig, args.config, overrides, flags)
    with ray_session(config.ray):
        results = benchmark_extraction(config, args.limit)
    logging.getLogger("benchmark").info("machine: %s", results["machine"])
    for line in (as_markdown(results), json.dumps(results)):
        logging.getLogger("benchmark").info("\n%s", line)
