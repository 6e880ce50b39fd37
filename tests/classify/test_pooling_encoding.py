"""Pooling and fitted encodings against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.classify.encoding import FisherVectorEncoder, VladEncoder
from raypipe.classify.pooling import WindowSequencePooler, make_pooler, pool, split_sequence


def test_percentile_pooling_values() -> None:
    frames = np.arange(11, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    # Column one holds 0..10: 10th/50th/90th percentiles 1, 5, 9; column two 0..-20: -18, -10, -2.
    assert np.allclose(pool(frames, "pct"), [1, -18, 5, -10, 9, -2])
    empty = pool(np.zeros((0, 2), np.float32), "pct")
    assert empty.shape == (6,) and np.isnan(empty).all()


def _two_clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 10.0]])
    frames = np.concatenate([c + 0.01 * rng.normal(size=(200, 2)) for c in centres])
    return centres, frames


def test_vlad_sums_residuals_to_the_nearest_centre() -> None:
    centres, frames = _two_clusters()
    encoder = VladEncoder(clusters=2, normalise=False).fit([frames[:150], frames[150:]])
    order = np.argsort(encoder.centres[:, 0])  # which fitted centre is which
    learnt = encoder.centres[order]
    assert np.allclose(learnt, centres, atol=0.01)
    media = np.array([learnt[1] + [1.0, 0.0], learnt[1] + [0.0, 2.0]])
    blocks = encoder.encode(media).reshape(2, 2)[order]
    assert np.allclose(blocks[0], 0.0)  # no frame near the first centre
    assert np.allclose(blocks[1], [1.0, 2.0], atol=1e-5)  # residuals summed
    normalised = VladEncoder(clusters=2).fit([frames]).encode(media)
    assert np.linalg.norm(normalised) == pytest.approx(1.0, abs=1e-5)
    assert np.isnan(encoder.encode(np.zeros((0, 2)))).all()


def test_fisher_vector_of_frames_at_the_mean() -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(loc=[2.0, -1.0], scale=[1.0, 3.0], size=(5000, 2))
    encoder = FisherVectorEncoder(components=1, normalise=False).fit([frames])
    mean = encoder.gmm.means_[0]
    # One Gaussian (weight 1, posterior 1): frames exactly at the mean give zero mean-gradient
    # and a variance-gradient of (0 - 1) / sqrt(2) in every dimension.
    fv = encoder.encode(np.stack([mean, mean, mean]))
    assert fv.shape == (4,)
    assert np.allclose(fv[:2], 0.0, atol=1e-6)
    assert np.allclose(fv[2:], -1 / np.sqrt(2), atol=1e-6)
    # One standard deviation above the mean in dimension 0: u = 1, v = (1 - 1) / sqrt(2) = 0.
    sigma = np.sqrt(encoder.gmm.covariances_[0])
    fv = encoder.encode((mean + np.array([sigma[0], 0.0]))[None])
    assert np.allclose(fv, [1.0, 0.0, 0.0, -1 / np.sqrt(2)], atol=1e-6)
    assert np.linalg.norm(FisherVectorEncoder(2).fit([frames]).encode(frames[:9])) == (
        pytest.approx(1.0, abs=1e-5)
    )


def test_fisher_vector_is_scikit_image_s_without_weight_gradients_and_sign_of_variances() -> None:
    """The encoder reads its gradients from skimage.feature.fisher_vector: they equal the
    documented formula (written out here) once skimage's K mixture-weight gradients are
    dropped and its variance block negated; its 'improved' vector differs from ours only in
    the L2 norm, which in skimage also counts those K weight gradients."""
    from skimage.feature import fisher_vector

    rng = np.random.default_rng(3)
    train = [rng.normal(size=(40, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -2.0] for _ in range(6)]
    media = rng.normal(size=(25, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -2.0]
    encoder = FisherVectorEncoder(components=4, seed=0, normalise=False).fit(train)
    gmm = encoder.gmm
    k, d = gmm.means_.shape
    # The documented formula, from the GMM's posteriors.
    assert gmm.means_.dtype == np.float64
    posteriors = gmm.predict_proba(media)
    z = (media[:, None, :] - gmm.means_[None]) / np.sqrt(gmm.covariances_)[None]
    scale = len(media) * np.sqrt(gmm.weights_)[:, None]
    u = np.einsum("tk,tkd->kd", posteriors, z) / scale
    v = np.einsum("tk,tkd->kd", posteriors, z**2 - 1) / (np.sqrt(2) * scale)
    expected = np.concatenate([u.ravel(), v.ravel()])
    np.testing.assert_allclose(encoder.encode(media), expected, rtol=1e-5, atol=1e-6)
    library = fisher_vector(media, gmm, improved=False)
    assert library.shape == (2 * k * d + k,)
    np.testing.assert_allclose(library[k : k + k * d], u.ravel(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(library[k + k * d :], -v.ravel(), rtol=1e-9, atol=1e-12)
    # Improved (power + L2) vectors: the same up to the norm and the variance block's sign.
    ours = FisherVectorEncoder(components=4, seed=0).fit(train).encode(media)
    improved = fisher_vector(media, gmm, improved=True)[k:]
    improved[k * d :] *= -1.0
    np.testing.assert_allclose(ours, improved / np.linalg.norm(improved), rtol=1e-5, atol=1e-6)


def test_window_sequences_layout_and_round_trip() -> None:
    frames = np.arange(10, dtype=np.float32)[:, None].repeat(2, axis=1)  # frame t = [t, t]
    pooler = WindowSequencePooler(window=4, hop=3, steps=5)
    vector = pooler.encode(frames)
    windows, mask = split_sequence(vector[None], steps=5)
    # Windows start at 0, 3, 6, 9: means of 0-3, 3-6, 6-9 and the short window 9.
    assert mask[0].tolist() == [True, True, True, True, False]
    assert np.allclose(windows[0, :, 0], [1.5, 4.5, 7.5, 9.0, 0.0])
    empty = pooler.encode(np.zeros((0, 2), np.float32))
    assert not empty[:5].any()
    with pytest.raises(ValueError, match="unknown pooling"):
        make_pooler("median")
