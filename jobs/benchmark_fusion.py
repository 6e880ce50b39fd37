"""Benchmark of fusion-weight search: candidates scored per second, three ways, one run.

    python jobs/benchmark_fusion.py [--media 383] [--models 6] [--candidates 100000]
        [--naive 2000] [--tune-trials 200] [--missing 0.1]

    # the corpus-size case of issue 15: 10 models x 2,000 media, a missing modality
    python jobs/benchmark_fusion.py --models 10 --media 2000 --tune-trials 0 --naive 400

On the same synthetic validation predictions (``--models`` models, ``--media`` labelled media,
7 classes; AFEW's validation split has 383 clips) and the same random weight vectors it times:

- the vectorised scorer (:class:`raypipe.fusion.methods.weighted.CandidateScorer`) on one
  thread, with one weight per model, per model x class, and per model x class with the first
  model missing on ``--missing`` of the media (a missing modality);
- a naive Python loop over the same candidates, one at a time: the reference fusion
  (``weighted_fusion``) then scikit-learn's scores, as the Ray Tune trial does, and the same
  loop with NumPy-only scores;
- Ray Tune trials of `raypipe fuse` (one weight vector per trial) on an embedded local Ray.

It checks that the vectorised and the naive scores agree (the missing-modality scores too, on
a subset), then prints a Markdown table and, as its last line, one JSON object: the rates of the
three vectorised rows in candidates per second of wall time and per CPU-second of the process
(``*_per_cpu_s``: the scorer runs on one thread, so this is per core even on a busy machine),
the 1-minute load average, and the agreement flag. Results are recorded in docs/benchmarks.md.

"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from raypipe.fusion.methods.weighted import CandidateScorer
from raypipe.fusion.rules import AlignedPredictions, weighted_fusion
from raypipe.metrics import classification_scores

log = logging.getLogger("raypipe.benchmark_fusion")


def synthetic_predictions(
    n_models: int, n_media: int, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(M, N, C) probabilities of models of varying skill and (N,) labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_media)
    probs = np.empty((n_models, n_media, n_classes))
    for m in range(n_models):
        skill = 0.5 + 1.5 * m / max(n_models - 1, 1)
        logits = rng.normal(size=(n_media, n_classes))
        logits[np.arange(n_media), labels] += skill
        probs[m] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


def numpy_macro_f1(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes present in ``labels`` (as classification_scores)."""
    true = np.bincount(labels, minlength=n_classes)
    guessed = np.bincount(predicted, minlength=n_classes)
    hits = np.bincount(labels[labels == predicted], minlength=n_classes)
    present = true > 0
    return float(np.mean(2 * hits[present] / (true[present] + guessed[present])))


def time_rate(work, count: int) -> tuple[float, float, object]:
    """(seconds, items per second, result) of ``work()`` over ``count`` items (wall time)."""
    seconds, _, result = time_both(work)
    return seconds, count / seconds, result


def time_both(work) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of ``work()``."""
    started, started_cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - started, time.process_time() - started_cpu, result


def tune_rate(probs: np.ndarray, labels: np.ndarray, trials: int) -> tuple[float, float]:
    """(seconds, trials per second) of `raypipe fuse`'s Ray Tune stage, Ray already started."""
    import ray

    from raypipe.config import FuseConfig
    from raypipe.pipeline.fuse import tune_weight_candidates
    from raypipe.store.run_folder import RunFolder

    n_models, n_media, _ = probs.shape
    aligned = AlignedPredictions(
        [f"m{i}" for i in range(n_models)],
        np.array([f"v{i}" for i in range(n_media)], dtype=object),
        np.array(["val"] * n_media, dtype=object),
        labels,
        probs.astype(np.float32),
    )
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            run = RunFolder(Path(folder))
            config = FuseConfig(run=run.root, num_samples=trials)
            started = time.perf_counter()
            tune_weight_candidates(aligned, run, config, probs.shape[2])
            seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    return seconds, trials / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=int, default=383, help="labelled validation media")
    parser.add_argument("--models", type=int, default=6, help="fused models")
    parser.add_argument("--classes", type=int, default=7, help="classes")
    parser.add_argument("--candidates", type=int, default=100_000, help="vectorised candidates")
    parser.add_argument("--naive", type=int, default=2000, help="candidates of the naive loops")
    parser.add_argument("--tune-trials", type=int, default=200, help="Ray Tune trials; 0: skip")
    parser.add_argument(
        "--missing", type=float, default=0.1, help="share of media the first model misses"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    probs, labels = synthetic_predictions(args.models, args.media, args.classes, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    per_model = rng.random((args.candidates, args.models))
    per_class = rng.random((args.candidates, args.models, args.classes))
    rows = []
    per_cpu = {}
    with threadpool_limits(1):
        scorer = CandidateScorer(probs, labels, "sum", "macro_f1")
        scorer.scores(per_model[:1024])  # warm-up (compiles the kernel on a first run)
        seconds, cpu, fast = time_both(lambda: scorer.scores(per_model))
        rate = len(per_model) / seconds
        per_cpu["per_model"] = len(per_model) / cpu
        rows.append(("vectorised, one weight per model", len(per_model), seconds, rate))
        seconds_c, cpu, _ = time_both(lambda: scorer.scores(per_class))
        rate_c = len(per_class) / seconds_c
        per_cpu["per_class"] = len(per_class) / cpu
        rows.append(("vectorised, one weight per model x class", len(per_class), seconds_c, rate_c))
        holes = probs.copy()
        holes[0, : int(args.media * args.missing)] = np.nan  # the first model misses some media
        gappy = CandidateScorer(holes, labels, "sum", "macro_f1")
        seconds_g, cpu, fast_g = time_both(lambda: gappy.scores(per_class))
        rate_g = len(per_class) / seconds_g
        per_cpu["missing_per_class"] = len(per_class) / cpu
        rows.append(
            (
                f"vectorised, per model x class, a model missing on {args.missing:.0%} of media",
                len(per_class),
                seconds_g,
                rate_g,
            )
        )
        subset = per_model[: args.naive]

        def reference() -> list[float]:
            return [
                classification_scores(
                    labels, weighted_fusion(probs, w, "sum").argmax(1), args.classes
                )["macro_f1"]
                for w in subset
            ]

        def numpy_loop() -> list[float]:
            return [
                numpy_macro_f1(labels, weighted_fusion(probs, w, "sum").argmax(1), args.classes)
                for w in subset
            ]

        seconds_r, rate_r, slow = time_rate(reference, len(subset))
        rows.append(
            ("naive loop: weighted_fusion + scikit-learn scores", len(subset), seconds_r, rate_r)
        )
        seconds_n, rate_n, slow_numpy = time_rate(numpy_loop, len(subset))
        rows.append(("naive loop: weighted_fusion + NumPy scores", len(subset), seconds_n, rate_n))
        subset_c = per_class[: args.naive // 4]
        fast_c = scorer.scores(subset_c)

        def reference_per_class() -> list[float]:
            return [
                classification_scores(
                    labels, weighted_fusion(probs, w, "sum").argmax(1), args.classes
                )["macro_f1"]
                for w in subset_c
            ]

        seconds_rc, rate_rc, slow_c = time_rate(reference_per_class, len(subset_c))
        rows.append(
            (
                "naive loop per model x class: weighted_fusion + scikit-learn",
                len(subset_c),
                seconds_rc,
                rate_rc,
            )
        )
        slow_g = [
            classification_scores(labels, weighted_fusion(holes, w, "sum").argmax(1), args.classes)[
                "macro_f1"
            ]
            for w in subset_c
        ]
    agree = (
        bool(np.array_equal(fast[: args.naive], slow))
        and bool(np.allclose(slow, slow_numpy))
        and bool(np.array_equal(fast_c, slow_c))
        and bool(np.array_equal(fast_g[: len(subset_c)], slow_g))
    )
    if args.tune_trials:
        seconds_t, rate_t = tune_rate(probs, labels, args.tune_trials)
        rows.append(
            (
                f"Ray Tune trials ({os.cpu_count()} CPUs, local Ray)",
                args.tune_trials,
                seconds_t,
                rate_t,
            )
        )
    print(
        f"\n{args.models} models x {args.media} val media x {args.classes} classes; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f}; vectorised and naive scores agree: {agree}\n"
    )
    print("| path | candidates | seconds | candidates/s | ratio to naive (sklearn) |")
    print("|---|---|---|---|---|")
    for name, count, secs, per_second in rows:
        print(f"| {name} | {count} | {secs:.2f} | {per_second:,.0f} | {per_second / rate_r:,.2f} |")
    load = os.getloadavg()[0]
    summary = {
        "models": args.models,
        "media": args.media,
        "classes": args.classes,
        "missing": args.missing,
        "candidates": args.candidates,
        "candidates_per_s": round(rate),
        "candidates_per_s_per_class": round(rate_c),
        "candidates_per_s_missing_per_class": round(rate_g),
        "candidates_per_cpu_s": round(per_cpu["per_model"]),
        "candidates_per_cpu_s_per_class": round(per_cpu["per_class"]),
        "candidates_per_cpu_s_missing_per_class": round(per_cpu["missing_per_class"]),
        "settled_pairs": scorer.settled + gappy.settled,
        "load_1min": round(load, 2),
        "agree": agree,
        "rows": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
