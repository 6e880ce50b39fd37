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


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _add4(out: np.ndarray, src: np.ndarray, v: np.ndarray, w: np.ndarray, m: int) -> None:
    """``out = src + v[m:m+4] @ w[m:m+4]`` over the candidates."""
    v0, v1, v2, v3 = v[m], v[m + 1], v[m + 2], v[m + 3]
    w0, w1, w2, w3 = w[m], w[m + 1], w[m + 2], w[m + 3]
    for j in range(out.shape[0]):
        out[j] = src[j] + ((v0 * w0[j] + v1 * w1[j]) + (v2 * w2[j] + v3 * w3[j]))


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _add8(out: np.ndarray, src: np.ndarray, v: np.ndarray, w: np.ndarray, m: int) -> None:
    """``out = src + v[m:m+8] @ w[m:m+8]`` over the candidates."""
    v0, v1, v2, v3 = v[m], v[m + 1], v[m + 2], v[m + 3]
    v4, v5, v6, v7 = v[m + 4], v[m + 5], v[m + 6], v[m + 7]
    w0, w1, w2, w3 = w[m], w[m + 1], w[m + 2], w[m + 3]
    w4, w5, w6, w7 = w[m + 4], w[m + 5], w[m + 6], w[m + 7]
    for j in range(out.shape[0]):
        out[j] = src[j] + (
            ((v0 * w0[j] + v1 * w1[j]) + (v2 * w2[j] + v3 * w3[j]))
            + ((v4 * w4[j] + v5 * w5[j]) + (v6 * w6[j] + v7 * w7[j]))
        )


@njit(cache=True, nogil=True, fastmath=_FLAGS)
def _last8(
    best: np.ndarray,
    second: np.ndarray,
    arg: np.ndarray,
    src: np.ndarray,
    v: np.ndarray,
    w: np.ndarray,
    m: int,
    c: int,
) -> None:
    """Class ``c``'s score ``src + v[m:m+8] @ w[m:m+8]`` into the running best, runner-up and
    arg-max over the candidates (class 0 starts them)."""
    v0, v1, v2, v3 = v[m], v[m + 1], v[m + 2], v[m + 3]
    v4, v5, v6, v7 = v[m + 4], v[m + 5], v[m + 6], v[m + 7]
    w0, w1, w2, w3 = w[m], w[m + 1], w[m + 2], w[m + 3]
    w4, w5, w6, w7 = w[m + 4], w[m + 5], w[m + 6], w[m + 7]
    if c == 0:
        for j in range(best.shape[0]):
            best[j] = src[j] + (
                ((v0 * w0[j] + v1 * w1[j]) + (v2 * w2[j] + v3 * w3[j]))
                + ((v4 * w4[j] + v5 * w5[j]) + (v6 * w6[j] + v7 * w7[j]))
            )
            second[j] = _LOWEST
            arg[j] = 0
        return
    for j in range(best.shape[0]):
        x = src[j] + (
            ((v0 * w0[j] + v1 * w1[j]) + (v2 * w2[j] + v3 * w3[j]))
            + ((v4 * w4[j] + v5 * w5[j]) + (v6 * w6[j] + v7 * w7[j]))
        )
        top = best[j]
        second[j] = max(second[j], min(x, top))
        arg[j] = c if x > top else arg[j]  # strictly greater: the first maximum wins
        best[j] = max(top, x)


@njit(cache=True, nogil=True)
def normalise_weights(
    weights: np.ndarray, patterns: np.ndarray, n_padded: int, empty: float
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's weights and biases for ``K`` candidates.

    Args:
        weights: (C', M, K) float64 non-negative weights, per class and model (C' = C) or
            per model (C' = 1), candidates last.
        patterns: (P, M) float64, 1 where a member is present in a presence pattern.
        n_padded: M' >= M, the kernel's member count (padded with zero weights).
        empty: the value a class takes where its weights over the present members sum to 0.

    Returns:
        (P, C', M', K) float32 weights divided per pattern and class by their sum over the
        present members (0 for absent and padded members, and where that sum is 0), and the
        (P, C', K) float32 biases: 0, or ``empty`` where the sum is 0.
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
                if total[j] <= 0:
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
        weights: (P, C', M, K) float32 weights normalised per pattern and class (0 for absent
            and padded members); C' = C, or C' = 1 when every class has the same weights.
        bias: (P, C', K) float32 value a class takes when its weights sum to 0 on a pattern.
        tol: scores this close to the best (absolute) make the pair undecided.
        predicted: (C, K) int32 prediction counts, incremented.
        hits: (C, K) int32 true-positive counts, incremented.
        close_media, close_candidate, close_class: (N * K,) int64 buffers that receive the
            undecided pairs: media, candidate and the kernel's own predicted class.

    Returns:
        The number of undecided pairs written to the buffers.
    """
    n_media, n_classes, n_models = values.shape
    k = weights.shape[3]
    shared = weights.shape[1] == 1  # one weight matrix for all classes
    acc = np.empty(k, np.float32)
    best = np.empty(k, np.float32)
    second = np.empty(k, np.float32)
    arg = np.empty(k, np.int32)
    n_close = 0
    for n in range(n_media):
        p = pattern[n]
        for c in range(n_classes):
            w = weights[p, 0 if shared else c]
            v = values[n, c]
            # Up to eight members per pass over the candidates: the members before the last
            # eight are added to the bias (four, then eight at a time), the last pass adds the
            # last eight and updates the arg-max directly, so a fused score is never stored.
            head = n_models - 8
            b = bias[p, 0 if shared else c]
            if head == 0:
                acc[:] = b
            elif head % 8 == 4:
                _add4(acc, b, v, w, 0)
            else:
                _add8(acc, b, v, w, 0)
            for m in range(head % 8 + 8 * (head % 8 == 0), head, 8):
                _add8(acc, acc, v, w, m)
            _last8(best, second, arg, acc, v, w, head, c)
        for c in range(n_classes):
            counts = predicted[c]
            for j in range(k):
                counts[j] += arg[j] == c
        y = labels[n]
        row = hits[y]
        for j in range(k):
            row[j] += arg[j] == y
        undecided = 0
        for j in range(k):
            undecided += best[j] - second[j] <= tol
        if undecided == 0:
            continue
        for j in range(k):
            if best[j] - second[j] <= tol:
                close_media[n_close] = n
                close_candidate[n_close] = j
                close_class[n_close] = arg[j]
                n_close += 1
    return n_close
