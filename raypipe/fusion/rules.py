"""Late fusion of class probabilities from several models (plain NumPy, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from raypipe.fusion.smoothing import media_predictions


@dataclass
class AlignedPredictions:
    """Predictions of M models over the union of their media, aligned by media id.

    Attributes:
        models: (M,) model names.
        media_ids: (N,) ids.
        splits: (N,) split names.
        labels: (N,) class index, -1 unlabelled.
        probs: (M, N, C) probabilities; NaN where a model has no prediction for a media.
    """

    models: list[str]
    media_ids: np.ndarray
    splits: np.ndarray
    labels: np.ndarray
    probs: np.ndarray

    def mask(self, split: str) -> np.ndarray:
        """Boolean mask of labelled media in ``split``."""
        return (self.splits == split) & (self.labels >= 0)

    def subset(self, mask: np.ndarray) -> AlignedPredictions:
        """The media selected by a boolean (N,) mask."""
        return AlignedPredictions(
            self.models,
            self.media_ids[mask],
            self.splits[mask],
            self.labels[mask],
            self.probs[:, mask],
        )


def align_predictions(
    predictions: dict[str, pd.DataFrame],
    window_s: float = 1.0,
    smoothing: str = "mean",
    decision: str = "mean",
) -> AlignedPredictions:
    """Align per-model prediction tables (media_id, split, label, probs) by media id.

    A table with a ``start_s`` column (seconds) holds frame or window rows; they are smoothed
    over ``window_s`` seconds and pooled into one row per media first
    (:func:`raypipe.fusion.smoothing.media_predictions`).
    """
    predictions = {
        model: (
            media_predictions(table, window_s, smoothing, decision)
            if "start_s" in table.columns
            else table
        )
        for model, table in predictions.items()
    }
    models = list(predictions)
    ids = sorted(set().union(*(set(t["media_id"]) for t in predictions.values())))
    index = {media_id: i for i, media_id in enumerate(ids)}
    n_classes = max(len(t["probs"].iloc[0]) for t in predictions.values() if len(t))
    probs = np.full((len(models), len(ids), n_classes), np.nan, dtype=np.float32)
    splits = np.array([""] * len(ids), dtype=object)
    labels = np.full(len(ids), -1, dtype=int)
    for m, model in enumerate(models):
        table = predictions[model]
        rows = np.array([index[i] for i in table["media_id"]], dtype=int)
        if len(rows):
            probs[m, rows] = np.stack(table["probs"].to_numpy())
        splits[rows] = table["split"].to_numpy()
        labels[rows] = np.maximum(labels[rows], table["label"].to_numpy())
    return AlignedPredictions(models, np.array(ids, dtype=object), splits, labels, probs)


RULES = ("sum", "product")

#: Probabilities are clipped to this floor before logs, so one confident zero cannot veto a class.
PROB_FLOOR = 1e-4


def weighted_fusion(probs: np.ndarray, weights: np.ndarray, rule: str = "sum") -> np.ndarray:
    """Fuse (M, N, C) probabilities with (M,) or (M, C) non-negative weights.

    Rules: 'sum' is the weighted arithmetic mean of the probabilities; 'product' is the weighted
    geometric mean (log-linear pooling, the "product rule"), renormalised over classes. The
    product rule suits modalities that each resolve a different part of the label: a class
    wins only when no model rules it out.

    Models without a prediction for a media (NaN) are left out and the remaining weights are
    renormalised, so a media missing one modality is still scored by the others. Media with no
    prediction at all get a uniform distribution.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 1:
        weights = weights[:, None]
    return fuse_per_media(probs, weights[:, None, :], rule)


def fuse_per_media(probs: np.ndarray, weights: np.ndarray, rule: str = "sum") -> np.ndarray:
    """:func:`weighted_fusion` with weights per media: (M, N, C) probabilities, (M, N, C) or
    (M, 1, C) weights (broadcast over the media). A media's fused row depends only on its own
    probabilities and weights, not on the other media, the batch or the arrays' memory layout:
    every sum runs in index order (:func:`ordered_sum`), so a media fused alone, in a batch
    or in the whole set gives the same float32 row, bit for bit."""
    if rule not in RULES:
        raise ValueError(f"unknown fusion rule '{rule}'; allowed: {', '.join(RULES)}")
    present = ~np.isnan(probs[..., :1])  # (M, N, 1)
    if rule == "product":
        logs = np.log(np.clip(np.nan_to_num(probs, nan=1.0), PROB_FLOOR, 1.0))
        total = ordered_sum(weights * present, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_log = ordered_sum(weights * logs * present, axis=0) / total
        mean_log = np.where(np.isfinite(mean_log), mean_log, 0.0)
        mean_log -= mean_log.max(axis=1, keepdims=True)
        fused = np.exp(mean_log)
        return (fused / ordered_sum(fused, axis=1)[:, None]).astype(np.float32)
    filled = np.nan_to_num(probs, nan=0.0)
    numerator = ordered_sum(weights * filled * present, axis=0)
    denominator = ordered_sum(weights * present, axis=0)
    n_classes = probs.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        fused = numerator / denominator
    fused[~np.isfinite(fused)] = 1.0 / n_classes
    return fused.astype(np.float32)


def ordered_sum(terms: np.ndarray, axis: int) -> np.ndarray:
    """Sum of ``terms`` along ``axis``, one term after another in index order.

    NumPy's own ``sum`` picks its order (eight running partial sums, or one term at a time)
    from the array's memory layout, so the same numbers can round differently when they sit
    in a different array; this order is fixed.
    """
    terms = np.moveaxis(np.asarray(terms), axis, 0)
    if len(terms) == 0:  # nothing to add: zeros, as NumPy's sum
        return np.zeros(terms.shape[1:], dtype=terms.dtype)
    total = terms[0].copy()
    for term in terms[1:]:
        total += term
    return total
