"""Benchmark recipe: training throughput (images/s) of `raypipe train` against a plain torch loop.

    python jobs/benchmark_train.py --size 64 --images 600 --workers 1,2
    ray job submit --working-dir . -- python jobs/benchmark_train.py --size 112 --workers 1,4 \
        --set use_gpu=true

Generates a labelled face corpus (raypipe.finetune.sample_faces) into a temporary folder, times a
plain single-process torch loop (1 thread, then as many threads as the largest worker count),
then `raypipe train` with each number of Ray Train workers (1 CPU each, or one GPU each with
--set use_gpu=true), same model, batch size and augmentation. The first epoch of every run is a
warm-up and is not counted. Prints a Markdown table with ratios to the 1-thread loop and a JSON
line for docs/benchmarks.md.
"""

import argparse
import json
import logging
import os
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import torch

from raypipe.config import TrainConfig
from raypipe.config.base import load_config
from raypipe.finetune.images import image_folder
from raypipe.finetune.sample_faces import write_image_folder
from raypipe.finetune.throughput import plain_loop_images_per_s
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.train import run_train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image side, pixels")
    parser.add_argument("--images", type=int, default=600, help="training images")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (first: warm-up)")
    parser.add_argument("--workers", default="1,2", help="comma-separated Ray Train workers")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--address", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    report = logging.getLogger("benchmark")
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="raypipe-bench-train-"))
    per_class = args.images // 4
    corpus = write_image_folder(
        folder / "faces", {"train": per_class, "val": 8}, size=args.size, identities=20
    )
    workers = [int(v) for v in args.workers.split(",")]
    base = [
        f"data.root={corpus}",
        f"data.image_size={args.size}",
        f"epochs={args.epochs}",
        "early_stop_patience=0",
        *args.overrides,
        *([f"ray.address={args.address}"] if args.address else []),
    ]
    config = load_config(TrainConfig, None, base, {"run": folder / "unused"})
    device = "cuda" if config.use_gpu and torch.cuda.is_available() else "cpu"
    images = image_folder(corpus)
    rows = []
    for threads in sorted({1, max(workers)}):
        rate = plain_loop_images_per_s(
            images, config.arch, args.size, config.batch_size, args.epochs, threads, device
        )
        rows.append({"path": f"plain torch loop, {threads} thread(s), {device}", "images/s": rate})
    with ray_session(config.ray):
        for count in workers:
            run = folder / f"run-{count}"
            cfg = load_config(TrainConfig, None, [*base, f"num_workers={count}"], {"run": run})
            run_train(cfg)
            history = pd.read_csv(run / "report" / "metrics.csv")
            rate = statistics.median(history["images_per_s"].iloc[1:])
            rows.append({"path": f"raypipe train, {count} worker(s), {device}", "images/s": rate})
    table = pd.DataFrame(rows)
    table["ratio"] = table["images/s"] / table["images/s"].iloc[0]
    lines = ["| path | images/s | ratio to 1-thread loop |", "|---|---|---|"]
    lines += [f"| {r.path} | {r[2]:.1f} | {r.ratio:.2f} |" for r in table.itertuples()]
    report.info("load average (1, 5, 15 min) before: %s, after: %s", load_before, os.getloadavg())
    report.info("\n%s", "\n".join(lines))
    summary = {
        "size": args.size,
        "images": len(images.indices("train")),
        "arch": config.arch,
        "batch_size": config.batch_size,
        "device": device,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rows": table.to_dict(orient="records"),
    }
    report.info("%s", json.dumps(summary))
