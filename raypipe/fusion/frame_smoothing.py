"""Temporal smoothing of frame-level predictions, frame rows kept (the ABAW3 smooth predicting).

A frame-level model's outputs (expression probabilities, AU probabilities, valence/arousal
values) flicker from frame to frame; a centred moving mean over ``window_s`` seconds of each
media's rows removes isolated errors when the truth changes more slowly than the frames. The
window is chosen on the val split by the task's challenge score (expression macro-F1, AU mean
F1 with thresholds chosen again on val, VA mean CCC), so a window that does not help stays
at 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from raypipe.metrics import au_f1, au_mean_f1, ccc, expression_macro_f1

#: Candidate smoothing windows, seconds (0: the model's own frame outputs).
SMOOTHING_WINDOWS_S: tuple[float, ...] = (0.0, 0.4, 0.8, 1.2, 1.6, 2.4, 3.2, 4.8)
#: Candidate AU thresholds chosen on val after smoothing.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: Frame-level tasks as run folders name them (a model record's ``task``).
FRAME_TASKS = ("classification", "multilabel", "regression")


def smooth_frames(table: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """``table`` (frame rows: media_id, start_s seconds, probs) with each row's ``probs``
    replaced by the mean of its media's rows within ``window_s / 2`` seconds of it (centred;
    rows keep their order). Works for class probabilities (the mean still sums to 1), per-label
    probabilities and regression values alike; ``window_s`` 0 returns a copy."""
    out = table.copy()
    if window_s <= 0 or out.empty:
        return out
    values = np.stack(out["probs"].to_numpy()).astype(np.float64)
    smoothed = np.empty_like(values)
    times = out["start_s"].to_numpy(dtype=np.float64)
    for rows in out.groupby("media_id", sort=False).indices.values():
        order = rows[np.argsort(times[rows], kind="stable")]
        t, v = times[order], values[order]
        lo = np.searchsorted(t, t - window_s / 2 - 1e-9, side="left")
        hi = np.searchsorted(t, t + window_s / 2 + 1e-9, side="right")
        cumulative = np.vstack([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)])
        smoothed[order] = (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]
    out["probs"] = list(smoothed.astype(np.float32))
    return out


def frame_score(task: str, table: pd.DataFrame, thresholds: Sequence[float] | None = None) -> float:
    """The challenge score of frame rows: expression macro-F1 over labelled frames
    (classification), AU mean F1 at ``thresholds`` (multilabel; default 0.5) or mean CCC over
    the targets (regression), from ``label`` / ``target`` and ``probs``."""
    if task not in FRAME_TASKS:
        raise ValueError(f"task '{task}' is not one of {', '.join(FRAME_TASKS)}")
    if table.empty:
        return float("nan")
    outputs = np.stack(table["probs"].to_numpy()).astype(np.float64)
    if task == "classification":
        return expression_macro_f1(table["label"].to_numpy(), outputs.argmax(axis=1))
    truth = np.stack(table["target"].to_numpy()).astype(np.float64)
    if task == "multilabel":
        return au_mean_f1(truth, outputs, 0.5 if thresholds is None else thresholds)
    per_target = []
    for k in range(truth.shape[1]):
        labelled = np.isfinite(truth[:, k])
        per_target.append(ccc(truth[labelled, k], outputs[labelled, k]))
    return float(np.nanmean(per_target)) if np.isfinite(per_target).any() else float("nan")


def au_thresholds_on(table: pd.DataFrame, grid: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
    """Per-label thresholds (L,) from ``grid``, each the one with the best F1 of its label on
    the rows of ``table`` (``target`` 0/1 or NaN, ``probs``); 0.5 for a never-labelled label."""
    truth = np.stack(table["target"].to_numpy()).astype(np.float64)
    outputs = np.stack(table["probs"].to_numpy()).astype(np.float64)
    chosen = np.full(truth.shape[1], 0.5)
    for k in range(truth.shape[1]):
        scores = [au_f1(truth[:, k : k + 1], outputs[:, k : k + 1], t)[0] for t in grid]
        if np.isfinite(scores).any():
            chosen[k] = grid[int(np.nanargmax(scores))]
    return chosen


def choose_window(
    task: str,
    val: pd.DataFrame,
    windows: Sequence[float] = SMOOTHING_WINDOWS_S,
    thresholds: Sequence[float] | None = None,
) -> tuple[float, dict[float, float], np.ndarray | None]:
    """The smoothing window (seconds) with the best :func:`frame_score` on the val rows
    ``val`` (the smallest among ties; 0 when nothing beats the raw outputs), the val score of
    every candidate, and for multilabel tasks the per-label thresholds at that window.

    Multilabel thresholds are chosen again on val for every window (smoothing narrows the
    outputs' spread, so thresholds fitted to the raw outputs no longer fit), unless
    ``thresholds`` are given (then kept for every window)."""
    if not windows:
        raise ValueError("windows is empty; give at least one smoothing window in seconds")
    scores: dict[float, float] = {}
    limits: dict[float, np.ndarray | None] = {}
    for window in windows:
        smoothed = smooth_frames(val, window)
        limit = None
        if task == "multilabel":
            limit = (
                np.asarray(thresholds, np.float64)
                if thresholds is not None
                else au_thresholds_on(smoothed)
            )
        scores[float(window)] = frame_score(task, smoothed, limit)
        limits[float(window)] = limit
    finite = {w: s for w, s in scores.items() if np.isfinite(s)}
    if not finite:
        return 0.0, scores, limits[float(windows[0])]
    best = max(finite.values())
    window = min(w for w, s in finite.items() if s >= best - 1e-12)
    return window, scores, limits[window]
