"""Frame-level smoothing: centred means per media against hand-computed values, the window
chosen on val, thresholds chosen again after smoothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raypipe.fusion.frame_smoothing import (
    au_thresholds_on,
    choose_window,
    frame_score,
    smooth_frames,
)


def _table(
    media: list[str], times: list[float], probs: list[list[float]], **columns
) -> pd.DataFrame:
    return pd.DataFrame(
        {"media_id": media, "start_s": times, "probs": [np.asarray(p, np.float32) for p in probs]}
        | columns
    )


def test_centred_mean_within_each_media_keeps_row_order() -> None:
    # Media b's rows come first and out of time order; media a must not leak into b.
    table = _table(
        ["b", "b", "a", "a", "a", "b"],
        [0.4, 0.0, 0.0, 0.2, 0.4, 0.2],
        [[9.0], [1.0], [0.0], [3.0], [6.0], [5.0]],
    )
    out = smooth_frames(table, 0.4)  # neighbours within 0.2 s
    # a: 0.0 -> mean(0, 3); 0.2 -> mean(0, 3, 6); 0.4 -> mean(3, 6)
    # b: 0.0 -> mean(1, 5); 0.2 -> mean(1, 5, 9); 0.4 -> mean(5, 9)
    expected = [7.0, 3.0, 1.5, 3.0, 4.5, 5.0]
    assert np.allclose(np.concatenate(out["probs"].to_numpy()), expected)
    assert out["media_id"].tolist() == table["media_id"].tolist()
    assert np.allclose(
        np.concatenate(smooth_frames(table, 0.0)["probs"].to_numpy()), [9, 1, 0, 3, 6, 5]
    )


def test_frame_scores_of_each_task() -> None:
    expr = _table(["a"] * 4, [0, 1, 2, 3], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    expr["label"] = [0, 1, 1, -1]  # the unlabelled frame is left out
    # predictions 0, 1, 0 against truth 0, 1, 1: class 0 F1 = 2/3, class 1 F1 = 2/3
    assert frame_score("classification", expr) == pytest.approx(2 / 3)
    au = _table(["a"] * 3, [0, 1, 2], [[0.7, 0.2], [0.4, 0.9], [0.6, 0.1]])
    au["target"] = [np.array([1.0, 0.0]), np.array([1.0, 1.0]), np.array([0.0, np.nan])]
    # at 0.5: unit 0 predicts 1, 0, 1 vs 1, 1, 0 -> F1 0.5; unit 1 predicts 0, 1 vs 0, 1 -> 1
    assert frame_score("multilabel", au) == pytest.approx(0.75)
    assert frame_score("multilabel", au, [0.3, 0.5]) == pytest.approx((0.8 + 1.0) / 2)
    va = _table(["a"] * 3, [0, 1, 2], [[0.1, 0.0], [0.2, 0.5], [0.3, 1.0]])
    va["target"] = [np.array([0.1, 0.0]), np.array([0.2, 0.5]), np.array([0.3, np.nan])]
    assert frame_score("regression", va) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="task"):
        frame_score("ranking", va)


def test_window_chosen_on_val_recovers_segments_under_flicker() -> None:
    rng = np.random.default_rng(0)
    times = np.arange(200) * 0.2  # 5 Hz
    truth = (times // 4).astype(int) % 3  # 4-second segments of 3 classes
    probs = np.eye(3)[truth] * 0.6 + 0.4 / 3
    flicker = rng.random(200) < 0.35
    probs[flicker] = np.eye(3)[rng.integers(0, 3, flicker.sum())] * 0.6 + 0.4 / 3
    val = _table(["v"] * 200, times.tolist(), probs.tolist(), label=truth)
    window, scores, limits = choose_window("classification", val, [0.0, 1.0, 2.0])
    assert limits is None
    assert window > 0 and scores[window] > scores[0.0] + 0.1
    # With nothing to gain (no flicker), the raw outputs (window 0) win the tie.
    clean = _table(["v"] * 200, times.tolist(), (np.eye(3)[truth]).tolist(), label=truth)
    assert choose_window("classification", clean, [0.0, 0.4])[0] == 0.0


def test_au_thresholds_are_chosen_again_after_smoothing() -> None:
    table = _table(["a"] * 4, [0, 1, 2, 3], [[0.3], [0.35], [0.1], [0.05]])
    table["target"] = [np.array([1.0]), np.array([1.0]), np.array([0.0]), np.array([0.0])]
    assert au_thresholds_on(table, [0.2, 0.5])[0] == 0.2
    window, _, limits = choose_window("multilabel", table, [0.0])
    assert window == 0.0 and limits is not None and 0.1 < limits[0] <= 0.3
