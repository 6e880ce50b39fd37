"""Fitted frame encodings: Fisher vectors over a diagonal GMM and VLAD over k-means centres.

Both learn a codebook from the training split's frames (``fit``), then turn one media's (T, D)
frame vectors into one vector (``encode``), followed by signed square root ("power") and L2
normalisation. A media without frames encodes to all-NaN, which a downstream imputer fills.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Frames drawn (evenly over media) to fit a codebook; keeps fitting time bounded.
MAX_FIT_FRAMES = 20000


def _fit_frames(sequences: Sequence[np.ndarray], seed: int) -> np.ndarray:
    frames = [np.asarray(s, np.float32) for s in sequences if len(s)]
    if not frames:
        raise ValueError("no training frames to fit the encoding on")
    stacked = np.concatenate(frames)
    stacked = stacked[np.isfinite(stacked).all(axis=1)]
    if len(stacked) > MAX_FIT_FRAMES:
        picks = np.random.default_rng(seed).choice(len(stacked), MAX_FIT_FRAMES, replace=False)
        stacked = stacked[picks]
    return stacked


def _normalise(vector: np.ndarray, power: bool) -> np.ndarray:
    if power:
        vector = np.sign(vector) * np.sqrt(np.abs(vector))
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector).astype(np.float32)


class FisherVectorEncoder:
    """Fisher vector of frames under a diagonal-covariance GMM with ``components`` Gaussians.

    For frames x_t, posteriors g_tk, weights w_k, means m_k and standard deviations s_k:
    ``u_k = sum_t g_tk (x_t - m_k) / s_k / (T sqrt(w_k))`` and
    ``v_k = sum_t g_tk (((x_t - m_k) / s_k)^2 - 1) / (T sqrt(2 w_k))``; the output is
    ``[u_1..u_K, v_1..v_K]`` (2 K D values), power- and L2-normalised when ``normalise``.

    The gradients come from :func:`skimage.feature.fisher_vector` (``improved=False``), whose
    output is ``[d_pi (K), u (K D), -v (K D)]``: its K mixture-weight gradients are left out
    and its variance block is negated (scikit-image differentiates with the opposite sign), so
    the vector is the one above, as models fitted before this change expect; the power and L2
    normalisation are applied afterwards, over these 2 K D values
    (tests/classify/test_pooling_encoding.py compares the two).
    """

    name = "fisher"

    def __init__(self, components: int = 8, seed: int = 0, normalise: bool = True) -> None:
        self.components, self.seed, self.normalise = components, seed, normalise
        self.gmm = None

    def fit(self, sequences: Sequence[np.ndarray]) -> FisherVectorEncoder:
        from sklearn.mixture import GaussianMixture

        # Fitted in float64: scikit-image squares the GMM's means in their own precision.
        frames = _fit_frames(sequences, self.seed).astype(np.float64)
        components = max(1, min(self.components, len(frames)))
        self.gmm = GaussianMixture(
            components, covariance_type="diag", reg_covar=1e-4, random_state=self.seed
        ).fit(frames)
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        if self.gmm is None:
            raise RuntimeError("FisherVectorEncoder.encode before fit")
        from skimage.feature import fisher_vector

        vectors = np.asarray(vectors, np.float64)
        k, d = self.gmm.means_.shape
        if vectors.ndim != 2 or len(vectors) == 0:
            return np.full(2 * k * d, np.nan, np.float32)
        gradients = fisher_vector(vectors, self.gmm, improved=False)  # [d_pi, u, -v]
        out = gradients[k:].copy()
        out[k * d :] *= -1.0
        return _normalise(out, power=True) if self.normalise else out.astype(np.float32)


class VladEncoder:
    """VLAD: for each of ``clusters`` k-means centres c_k, the sum of residuals x_t - c_k of the
    frames nearest to it (K D values), power- and L2-normalised when ``normalise``."""

    name = "vlad"

    def __init__(self, clusters: int = 8, seed: int = 0, normalise: bool = True) -> None:
        self.clusters, self.seed, self.normalise = clusters, seed, normalise
        self.centres: np.ndarray | None = None

    def fit(self, sequences: Sequence[np.ndarray]) -> VladEncoder:
        from sklearn.cluster import KMeans

        frames = _fit_frames(sequences, self.seed)
        clusters = max(1, min(self.clusters, len(frames)))
        model = KMeans(clusters, n_init=3, random_state=self.seed).fit(frames)
        self.centres = model.cluster_centers_.astype(np.float64)
        return self

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        if self.centres is None:
            raise RuntimeError("VladEncoder.encode before fit")
        vectors = np.asarray(vectors, np.float64)
        k, d = self.centres.shape
        if vectors.ndim != 2 or len(vectors) == 0:
            return np.full(k * d, np.nan, np.float32)
        distances = ((vectors[:, None, :] - self.centres[None]) ** 2).sum(axis=2)
        nearest = distances.argmin(axis=1)
        out = np.zeros((k, d))
        np.add.at(out, nearest, vectors - self.centres[nearest])
        out = out.reshape(-1)
        return _normalise(out, power=True) if self.normalise else out.astype(np.float32)
