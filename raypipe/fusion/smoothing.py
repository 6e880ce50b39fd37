"""Temporal smoothing of frame or window predictions, then one decision per media.

Frame- or window-level class probabilities flicker; averaging each over its neighbours in time
(a centred moving average or median over ``window_s`` seconds, or an exponential moving
average) before they are pooled into a media-level decision removes isolated flips.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SMOOTHERS = ("mean", "median", "ema")


def smooth_probs(
    probs: np.ndarray, times: np.ndarray, window_s: float, method: str = "mean"
) -> np.ndarray:
    """Smooth (T, C) probabilities at (T,) times (seconds) of one media.

    'mean' and 'median' replace each row by the mean or median of the rows within
    ``window_s / 2`` seconds of it (centred); 'ema' is an exponential moving average, in time
    order, with time constant ``window_s`` seconds (irregular steps handled). Rows are
    renormalised to sum to 1; the output keeps the input's row order.
    """
    if method not in SMOOTHERS:
        raise ValueError(f"unknown smoothing '{method}'; allowed: {', '.join(SMOOTHERS)}")
    probs = np.asarray(probs, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if len(probs) <= 1 or window_s <= 0:
        return probs.astype(np.float32)
    order = np.argsort(times, kind="stable")
    sorted_probs, sorted_times = probs[order], times[order]
    out = np.empty_like(sorted_probs)
    if method == "ema":
        out[0] = sorted_probs[0]
        for t in range(1, len(sorted_probs)):
            keep = np.exp(-(sorted_times[t] - sorted_times[t - 1]) / window_s)
            out[t] = keep * out[t - 1] + (1.0 - keep) * sorted_probs[t]
    else:
        lo = np.searchsorted(sorted_times, sorted_times - window_s / 2, side="left")
        hi = np.searchsorted(sorted_times, sorted_times + window_s / 2, side="right")
        reduce = np.mean if method == "mean" else np.median
        for t in range(len(sorted_probs)):
            out[t] = reduce(sorted_probs[lo[t] : hi[t]], axis=0)
    out /= np.maximum(out.sum(axis=1, keepdims=True), 1e-12)
    result = np.empty_like(out)
    result[order] = out
    return result.astype(np.float32)


def media_predictions(
    frames: pd.DataFrame, window_s: float, method: str = "mean", decision: str = "mean"
) -> pd.DataFrame:
    """Media-level predictions from frame/window rows.

    ``frames`` has columns media_id, start_s (seconds), probs (C floats) and optionally split
    and label. Each media's rows are smoothed with :func:`smooth_probs`, then pooled: 'mean'
    averages the smoothed probabilities, 'vote' gives each class its share of rows whose
    smoothed arg-max it is. Returns media_id, split, label, probs (one row per media, in
    first-appearance order).
    """
    if decision not in ("mean", "vote"):
        raise ValueError(f"unknown media decision '{decision}'; allowed: mean, vote")
    rows = []
    for media_id, group in frames.groupby("media_id", sort=False):
        probs = np.stack(group["probs"].to_numpy()).astype(np.float64)
        smoothed = smooth_probs(probs, group["start_s"].to_numpy(), window_s, method)
        if decision == "mean":
            pooled = smoothed.mean(axis=0)
        else:
            votes = np.bincount(smoothed.argmax(axis=1), minlength=probs.shape[1])
            pooled = votes / votes.sum()
        rows.append(
            {
                "media_id": media_id,
                "split": group["split"].iloc[0] if "split" in group else "",
                "label": int(group["label"].iloc[0]) if "label" in group else -1,
                "probs": pooled.astype(np.float32),
            }
        )
    return pd.DataFrame(rows, columns=["media_id", "split", "label", "probs"])
