"""Compiled scoring kernel of the fusion-weight search: fuse, arg-max and count in one pass.

:func:`count_block` scores a block of ``K`` weight candidates on ``N`` media in float32: for
every media and class the fused score is a weighted sum of the ``M`` members' values (weights
already normalised per presence pattern, so no division runs per media), the arg-max over
classes is kept with the runner-up, and the only outputs are counts, per class and candidate:
predictions and hits. A (media, candidate) pair whose two best fused scores lie within ``tol``
of each other is listed instead of trusted, so the caller can settle it with the reference
fusion (float32 rounding could otherwise decide it). Candidates lie on the innermost axis,
so every loop over them is vectorised.

The kernel is compiled by Numba on first use and cached on disk next to this module (or in
Numba's user cache when that folder is read-only).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Below every fused score; finite, so that best - runner-up stays finite with one class.
_LOWEST = np.float32(-3.0e38)


#: Floating-point liberties of the kernel: multiply-adds may be fused and signed zeros and
#: reciprocals relaxed; no reassociation and no assumption that values are finite. The
#: error bound of the caller (CandidateScorer) covers these roundings.
_FLAGS = {"contract", "nsz", "arcp"}


#: Media whose running arg-max is kept at once: a class's weights, read for the first media
#: of a tile, are reused from the L1 cache for the others (measured 12-33 % faster than one
#: media at a time at 10 models x 2,000 media x 7 classes; docs/benchmarks.md).
TILE = 8


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _head(
    acc: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    n: int,
    p: int,
    c: int,
    stop: int,
) -> None:
    """``acc = bias[p, c] + values[n, c, :stop] @ weights[p, c, :stop]`` over the candidates,
    members four at a time (``stop`` a multiple of 4)."""
    k = acc.shape[0]
    for j in range(k):
        acc[j] = bias[p, c, j]
    for m in range(0, stop, 4):
        v0, v1 = values[n, c, m], values[n, c, m + 1]
        v2, v3 = values[n, c, m + 2], values[n, c, m + 3]
        for j in range(k):
            acc[j] = acc[j] + (
                (v0 * weights[p, c, m, j] + v1 * weights[p, c, m + 1, j])
                + (v2 * weights[p, c, m + 2, j] + v3 * weights[p, c, m + 3, j])
            )


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _last8(
    best: np.ndarray,
    second: np.ndarray,
    arg: np.ndarray,
    r: int,
    acc: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    n: int,
    p: int,
    c: int,
    m: int,
) -> None:
    """Class ``c``'s score ``acc + values[n, c, m:m+8] @ weights[p, c, m:m+8]`` into row
    ``r`` of the running best, runner-up and arg-max over the candidates (class 0 starts
    them). Arrays are indexed, not sliced: a slice would cost a reference count per call, and
    only the candidate index may vary inside the loop for it to be vectorised."""
    v0, v1, v2, v3 = values[n, c, m], values[n, c, m + 1], values[n, c, m + 2], values[n, c, m + 3]
    v4, v5 = values[n, c, m + 4], values[n, c, m + 5]
    v6, v7 = values[n, c, m + 6], values[n, c, m + 7]
    k = acc.shape[0]
    if c == 0:
        for j in range(k):
            best[r, j] = acc[j] + (
                (
                    (v0 * weights[p, c, m, j] + v1 * weights[p, c, m + 1, j])
                    + (v2 * weights[p, c, m + 2, j] + v3 * weights[p, c, m + 3, j])
                )
                + (
                    (v4 * weights[p, c, m + 4, j] + v5 * weights[p, c, m + 5, j])
                    + (v6 * weights[p, c, m + 6, j] + v7 * weights[p, c, m + 7, j])
                )
            )
            second[r, j] = _LOWEST
            arg[r, j] = 0
        return
    for j in range(k):
        x = acc[j] + (
            (
                (v0 * weights[p, c, m, j] + v1 * weights[p, c, m + 1, j])
                + (v2 * weights[p, c, m + 2, j] + v3 * weights[p, c, m + 3, j])
            )
            + (
                (v4 * weights[p, c, m + 4, j] + v5 * weights[p, c, m + 5, j])
                + (v6 * weights[p, c, m + 6, j] + v7 * weights[p, c, m + 7, j])
            )
        )
        top = best[r, j]
        second[r, j] = max(second[r, j], min(x, top))
        arg[r, j] = c if x > top else arg[r, j]  # strictly greater: the first maximum wins
        best[r, j] = max(top, x)


@njit(cache=True, nogil=True)
def normalise_weights(
    weights: np.ndarray, patterns: np.ndarray, n_padded: int, empty: float
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's weights and biases for ``K`` candidates.

    Args:
        weights: (C, M, K) float64 non-negative weights, per class and model, candidates
            last.
        patterns: (P, M) float64, 1 where a member is present in a presence pattern.
        n_padded: M' >= M, the kernel's member count (padded with zero weights).
        empty: the value a class takes where its weights over the present members sum to 0.

    Returns:
        (P, C, M', K) float32 weights divided per pattern and class by their sum over the
        present members (0 for absent and padded members, and where that sum is 0), and the
        (P, C, K) float32 biases: 0, or ``empty`` where the sum is 0.
    """
    n_classes, n_models, k = weights.shape
    n_patterns = patterns.shape[0]
    out = np.zeros((n_patterns, n_classes, n_padded, k), np.float32)
    bias = np.zeros((n_patterns, n_classes, k), np.float32)
    total = np.empty(k)
    for p in range(n_patterns):
        present = patterns[p]
        for c in range(n_classes):
            total[:] = 0.0
            for m in range(n_models):
                if present[m]:
                    total += weights[c, m]
            for j in range(k):
                if not total[j] > 0:  # 0, or NaN: uniform, as the reference
                    bias[p, c, j] = empty
                    total[j] = np.inf  # its weights become 0
            for m in range(n_models):
                if present[m]:
                    out[p, c, m] = weights[c, m] / total
    return out, bias


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def count_block(
    values: np.ndarray,
    pattern: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    tol: float,
    predicted: np.ndarray,
    hits: np.ndarray,
    close_media: np.ndarray,
    close_candidate: np.ndarray,
    close_class: np.ndarray,
) -> int:
    """Count the predictions and hits of ``K`` candidates on ``N`` media.

    Args:
        values: (N, C, M) float32 member values (probabilities or log-probabilities), 0 where
            a member has no prediction; M a multiple of 4 and at least 8 (padded with zero
            members).
        pattern: (N,) int64 index of each media's presence pattern.
        labels: (N,) int64 true class of each media.
        weights: (P, C, M, K) float32 weights normalised per pattern and class (0 for absent
            and padded members).
        bias: (P, C, K) float32 value a class takes when its weights sum to 0 on a pattern.
        tol: scores this close to the best (absolute) make the pair undecided.
        predicted: (C, K) int32 prediction counts, incremented.
        hits: (C, K) int32 true-positive counts, incremented.
        close_media, close_candidate, close_class: int64 buffers of at least N * K that receive
            the undecided pairs: media, candidate and the kernel's own predicted class.

    Returns:
        The number of undecided pairs written to the buffers.
    """
    n_media, n_classes, n_models = values.shape
    k = weights.shape[3]
    head = n_models - 8
    acc = np.empty(k, np.float32)
    best = np.empty((TILE, k), np.float32)
    second = np.empty((TILE, k), np.float32)
    arg = np.empty((TILE, k), np.int32)
    n_close = 0
    for start in range(0, n_media, TILE):
        stop = min(start + TILE, n_media)
        # Class by class over the tile's media, so each class's weights stay in cache.
        for c in range(n_classes):
            for n in range(start, stop):
                p = pattern[n]
                _head(acc, values, weights, bias, n, p, c, head)
                _last8(best, second, arg, n - start, acc, values, weights, n, p, c, head)
        for n in range(start, stop):
            r = n - start
            for c in range(n_classes):
                for j in range(k):
                    predicted[c, j] += arg[r, j] == c
            y = labels[n]
            for j in range(k):
                hits[y, j] += arg[r, j] == y
            undecided = 0
            for j in range(k):
                undecided += best[r, j] - second[r, j] <= tol
            if undecided == 0:
                continue
            for j in range(k):
                if best[r, j] - second[r, j] <= tol:
                    close_media[n_close] = n
                    close_candidate[n_close] = j
                    close_class[n_close] = arg[r, j]
                    n_close += 1
    return n_close
