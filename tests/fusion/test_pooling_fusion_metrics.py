import numpy as np
import pandas as pd
import pytest

from raypipe.classify.pooling import pool
from raypipe.fusion.rules import align_predictions, weighted_fusion
from raypipe.metrics import classification_scores, confusion


def test_pooling_values() -> None:
    v = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32)
    assert np.allclose(pool(v, "mean"), [2, 4])
    assert np.allclose(pool(v, "max"), [3, 6])
    assert np.allclose(pool(v, "std"), [1, 2])
    assert np.allclose(pool(v, "meanstd"), [2, 4, 1, 2])
    empty = pool(np.zeros((0, 2), np.float32), "meanstd")
    assert empty.shape == (4,) and np.isnan(empty).all()
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(v, "median")


def test_scores_known_answers() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 1, 0, 0, 0])
    scores = classification_scores(y, p, 3)
    assert scores["accuracy"] == pytest.approx(3 / 6)
    assert scores["uar"] == pytest.approx((1 + 0.5 + 0) / 3)
    # F1: class0 P=2/5 R=1 -> 4/7; class1 P=1 R=.5 -> 2/3; class2 0
    assert scores["macro_f1"] == pytest.approx((4 / 7 + 2 / 3 + 0) / 3)
    assert confusion(y, p, 3).tolist() == [[2, 0, 0], [1, 1, 0], [2, 0, 0]]


def test_weighted_fusion_renormalises_missing() -> None:
    a = np.array([[[0.9, 0.1], [0.2, 0.8]]], dtype=np.float32)
    b = np.array([[[0.1, 0.9], [np.nan, np.nan]]], dtype=np.float32)
    probs = np.concatenate([a, b])
    fused = weighted_fusion(probs, np.array([3.0, 1.0]))
    assert np.allclose(fused[0], [0.7, 0.3])
    assert np.allclose(fused[1], [0.2, 0.8])  # only model a scored media 1
    per_class = weighted_fusion(probs, np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert np.allclose(per_class[0], [0.9, 0.9])


def test_fusion_beats_either_model_when_they_err_on_different_media() -> None:
    labels = np.array([0, 1, 0, 1])
    vis = np.array([[0.9, 0.1], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    aud = np.array([[0.4, 0.6], [0.1, 0.9], [0.8, 0.2], [0.1, 0.9]])
    tables = {
        name: pd.DataFrame(
            {
                "media_id": list("abcd"),
                "split": ["val"] * 4,
                "label": labels,
                "probs": list(p.astype(np.float32)),
            }
        )
        for name, p in {"vis": vis, "aud": aud}.items()
    }
    aligned = align_predictions(tables)
    fused = weighted_fusion(aligned.probs, np.ones(2)).argmax(1)
    assert (fused == labels).mean() == 1.0
    assert (vis.argmax(1) == labels).mean() < 1 and (aud.argmax(1) == labels).mean() < 1
