"""Per-frame values of every native frame from the frames that have one (the submission
writer's filling), on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from raypipe.media.datasets.abaw import fill_native_frames


def test_rows_on_one_frame_are_averaged_and_gaps_take_the_nearest_frame() -> None:
    # Values at frames 1 (two rows), 4 and 9 (past the 7 frames: dropped).
    values = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    filled, own = fill_native_frames([1, 1, 4, 9], values, 7)
    assert filled.shape == (7, 2)
    # Frame 0 -> 1; 2 -> 1 (distance 1 against 2); 3 -> 4; 5, 6 -> 4.
    expected = [[0.5, 0.5]] * 3 + [[2.0, 2.0]] * 4
    np.testing.assert_allclose(filled, expected)
    assert own.tolist() == [False, True, False, False, True, False, False]


def test_a_tie_takes_the_earlier_frame_and_one_dimensional_values_work() -> None:
    filled, own = fill_native_frames([0, 2], np.array([10.0, 20.0]), 3)
    np.testing.assert_allclose(filled, [10.0, 10.0, 20.0])
    assert own.sum() == 2


def test_no_value_inside_the_video_is_an_error() -> None:
    with pytest.raises(ValueError, match="no value falls on one of the video's 3 frames"):
        fill_native_frames([5], np.array([1.0]), 3)
