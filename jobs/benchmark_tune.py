"""Benchmark recipe: trials per minute of `raypipe tune-classifiers` against a naive loop.

    python jobs/benchmark_tune.py --media 84 --concurrency 1,2 --set ray.num_cpus=2
    ray job submit --working-dir . -- python jobs/benchmark_tune.py --media 840 --concurrency 8

Writes a synthetic feature store (three frame-level feature sets of 64, 48 and 96 dimensions,
7 classes, 12 frames per media) into a temporary folder and compacts it (as `raypipe extract`
leaves a store), then runs the same search in one
process: first a naive loop (a plain Python for-loop that loads the matrices and fits every
configuration with its predictions, one after another), then `raypipe tune-classifiers` on
Ray (one CPU per trial; short configurations packed several to a trial unless
--set configs_per_trial=1) at each --concurrency, a fresh run folder each so nothing is
resumed.
Both fit 3 feature sets x 3 poolings (mean, pct, fisher) x 4 classifiers (logreg, linsvc, rf,
lightgbm) x 2 parameter values = 72 configurations with the same code (raypipe.classify.fit).
Prints a Markdown table and a JSON line for docs/benchmarks.md.
"""

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from raypipe.classify.fit import fit_and_score, outputs
from raypipe.classify.search_space import trial_specs
from raypipe.config import TuneClassifiersConfig
from raypipe.config.base import load_config
from raypipe.labels import EMOTIW7
from raypipe.pipeline.runtime import ray_session
from raypipe.pipeline.tune_classifiers import load_matrices, run_tune_classifiers
from raypipe.store.compaction import compact
from raypipe.store.feature_store import ExtractorRecord, FeatureStore
from raypipe.store.schema import FRAME_SCHEMA, STATUS_OK

SETS = {"face_sim": (64, "visual"), "voice_sim": (48, "audio"), "words_sim": (96, "text")}
POOLED = ", ".join(f"{{extractor: {name}, pooling: [mean, pct, fisher]}}" for name in SETS)
SEARCH = [
    f"feature_sets=[{POOLED}]",
    "classifiers=[logreg, linsvc, rf, lightgbm]",
    "param_grid={logreg: {C: [0.1, 1.0]}, lightgbm: {num_leaves: [4, 15], n_estimators: [100]},"
    " linsvc: {C: [0.1, 1.0]}, rf: {n_estimators: [100], max_depth: [null, 8],"
    " min_samples_leaf: [1]}}",
    "pooling_components=4",
]


def write_store(root: Path, media: int, frames: int = 12, seed: int = 0) -> str:
    """A store of ``media`` clips (7 classes, splits 60/20/20) with three frame-level sets
    whose frames scatter around a class centre."""
    rng = np.random.default_rng(seed)
    store = FeatureStore(str(root))
    store.initialise()
    ids = [f"clip{i:04d}" for i in range(media)]
    labels = [i % 7 for i in range(media)]
    splits = [("train", "train", "train", "val", "test")[(i // 7) % 5] for i in range(media)]
    store.write_manifest(
        pd.DataFrame(
            {
                "media_id": ids,
                "path": [f"/synthetic/{m}.mp4" for m in ids],
                "label": [EMOTIW7[c] for c in labels],
                "split": splits,
            }
        )
    )
    store.register_extractors(
        ExtractorRecord(name, "v1", "frame", dim, modality, {})
        for name, (dim, modality) in SETS.items()
    )
    centres = {name: rng.normal(size=(7, dim)) for name, (dim, _) in SETS.items()}
    for media_id, label in zip(ids, labels, strict=True):
        for name, (dim, _) in SETS.items():
            vectors = centres[name][label] + 2.0 * rng.normal(size=(frames, dim))
            rows = pa.Table.from_pylist(
                [
                    {
                        "media_id": media_id,
                        "frame_index": i,
                        "timestamp_s": i / 2,
                        "has_face": True,
                        "features": v.astype(np.float32).tolist(),
                    }
                    for i, v in enumerate(vectors)
                ],
                schema=FRAME_SCHEMA,
            )
            store.write_result(name, "v1", media_id, {"status": STATUS_OK}, rows)
    # As `raypipe extract` leaves a store: its results compacted into few files.
    compact(store)
    return store.uri


def naive_loop(config: TuneClassifiersConfig) -> tuple[int, float]:
    """Fit every configuration one after another in this process; (trials, seconds)."""
    started = time.perf_counter()
    matrices = load_matrices(config, FeatureStore(config.store))
    specs = trial_specs(config, matrices)
    for spec in specs:
        matrix = matrices[spec["feature_set"]]
        model, _ = fit_and_score(matrix, spec, 7, config.seed, config.balance)
        outputs(model, matrix.task, matrix.x, 7)
    return len(specs), time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", type=int, default=84, help="clips in the synthetic store")
    parser.add_argument(
        "--concurrency", default="2", help="comma-separated max_concurrent_trials to time"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--address", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    report = logging.getLogger("benchmark")
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="raypipe-bench-tune-"))
    store = write_store(folder / "store", args.media)
    overrides = [
        *SEARCH,
        *args.overrides,
        *([f"ray.address={args.address}"] if args.address else []),
    ]
    config = load_config(
        TuneClassifiersConfig, None, overrides, {"store": store, "run": folder / "run"}
    )

    naive_trials, naive_s = naive_loop(config)
    rows = [{"path": "naive loop (1 process)", "trials": naive_trials, "seconds": naive_s}]
    with ray_session(config.ray):
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0))
        for concurrent in [int(v) for v in args.concurrency.split(",")]:
            # A new run folder per timing, so nothing is resumed from the previous one.
            run = folder / f"run-{concurrent}"
            timed = config.model_copy(update={"run": run, "max_concurrent_trials": concurrent})
            started = time.perf_counter()
            best = run_tune_classifiers(timed)
            seconds = time.perf_counter() - started
            trials = pd.read_parquet(run / "trials.parquet")
            path = f"raypipe tune-classifiers ({concurrent} trial(s) at once, {cpus} CPUs)"
            rows.append({"path": path, "trials": len(trials), "seconds": seconds})
            rows[-1]["fit_s"] = float(trials["seconds"].sum())
    for row in rows:
        row["trials_per_min"] = 60 * row["trials"] / row["seconds"]
    base = rows[0]["trials_per_min"]
    print("| path | trials | seconds | trials/min | ratio | fit seconds inside trials |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        fit = f"{row['fit_s']:.1f}" if "fit_s" in row else ""
        print(
            f"| {row['path']} | {row['trials']} | {row['seconds']:.1f} | "
            f"{row['trials_per_min']:.1f} | {row['trials_per_min'] / base:.2f} | {fit} |"
        )
    summary = {
        "media": args.media,
        "cpus": cpus,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
        "best_val": float(best.iloc[:, 4].max()),
    }
    print(json.dumps(summary, default=float))
    report.info("results in %s", folder)
