"""Windows over a media and what each modality holds inside them."""

from __future__ import annotations

import pandas as pd
import pytest

from raypipe.extractors.windows import rows_in_window, sliding_windows, window_contents


def test_sliding_windows_length_and_hop() -> None:
    assert sliding_windows(10.0, 4.0, 2.0) == [(0, 4), (2, 6), (4, 8), (6, 10), (8, 10)]
    assert sliding_windows(10.0, 4.0, 2.0, keep_partial=False) == [
        (0, 4), (2, 6), (4, 8), (6, 10),
    ]  # fmt: skip
    assert sliding_windows(10.0, 5.0) == [(0, 5), (5, 10)]
    assert sliding_windows(1.5, 4.0, 1.0) == [(0, 1.5)]
    assert sliding_windows(0.0, 1.0) == []
    with pytest.raises(ValueError):
        sliding_windows(5.0, 0.0)


def test_rows_in_window_by_time_or_span() -> None:
    frames = pd.DataFrame({"media_id": "m", "timestamp_s": [0.0, 0.2, 0.4, 0.6, 1.0]})
    assert rows_in_window(frames, 0.2, 0.6)["timestamp_s"].tolist() == [0.2, 0.4]
    words = pd.DataFrame(
        {"media_id": "m", "timestamp_s": [0.1, 0.5, 0.9], "end_s": [0.4, 0.8, 1.4],
         "text": ["open", "the", "door"]}
    )  # fmt: skip
    assert rows_in_window(words, 0.0, 0.6)["text"].tolist() == ["open"]
    assert rows_in_window(words, 0.0, 0.6, overlap=True)["text"].tolist() == ["open", "the"]
    assert rows_in_window(words, 1.0, 2.0)["text"].tolist() == ["door"]


def test_window_contents_cut_every_table_of_one_media() -> None:
    tables = {
        "faces": pd.DataFrame({"media_id": ["m", "m", "n"], "timestamp_s": [0.5, 1.5, 0.5]}),
        "lld": pd.DataFrame(
            {"media_id": "m", "timestamp_s": [0.0, 1.0, 1.2], "end_s": [0.02, 1.02, 1.22]}
        ),
    }
    contents = window_contents(tables, "m", sliding_windows(2.0, 1.0))
    assert [(c.start_s, c.end_s) for c in contents] == [(0, 1), (1, 2)]
    assert len(contents[0].rows["faces"]) == 1 and len(contents[1].rows["lld"]) == 2
