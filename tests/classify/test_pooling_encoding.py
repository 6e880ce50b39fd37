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
