"""Time alignment of stored rows: sliding windows over a media, and what falls inside a window.

Every time-stamped table of the store can be cut by the same windows, so window-level fusion
(window length and hop, as in feature-based compound-emotion systems) works for every modality:
visual frames (``timestamp_s``), openSMILE LLD frames, Whisper segments and words, speech
segments and encoder windows (``timestamp_s`` to ``end_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


def sliding_windows(
    duration_s: float, window_s: float, hop_s: float | None = None, keep_partial: bool = True
) -> list[tuple[float, float]]:
    """Windows ``(start, end)`` in seconds of length ``window_s`` every ``hop_s`` seconds.

    Args:
        duration_s: media duration, seconds.
        window_s: window length, seconds (> 0).
        hop_s: step between window starts, seconds (> 0); default ``window_s``.
        keep_partial: keep a last window that ends past ``duration_s`` (its end is clipped);
            a media shorter than one window then still has one window.

    Raises:
        ValueError: ``window_s`` or ``hop_s`` is not positive.
    """
    hop_s = window_s if hop_s is None else hop_s
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window_s and hop_s must be positive, got {window_s} and {hop_s}")
    if duration_s <= 0:
        return []
    windows: list[tuple[float, float]] = []
    count = max(1, math.ceil((duration_s - window_s) / hop_s + 1e-9) + 1)
    for i in range(count):
        start = i * hop_s
        end = start + window_s
        if start >= duration_s:
            break
        if end > duration_s + 1e-9:
            if not keep_partial and windows:
                break
            end = duration_s
        windows.append((round(start, 6), round(end, 6)))
    return windows


def rows_in_window(
    rows: pd.DataFrame, start_s: float, end_s: float, overlap: bool = False
) -> pd.DataFrame:
    """Rows of one media whose time lies inside ``[start_s, end_s)`` (seconds).

    Rows with a single time (``timestamp_s``: video frames) are inside when that time is.
    Rows with a span (``timestamp_s`` to ``end_s``: LLD frames, words, segments) are inside when
    their midpoint is, or, with ``overlap``, when the span overlaps the window at all.
    """
    if rows.empty:
        return rows
    starts = rows["timestamp_s"].to_numpy(np.float64)
    if "end_s" in rows.columns:
        ends = rows["end_s"].to_numpy(np.float64)
        if overlap:
            mask = (starts < end_s) & (ends > start_s)
        else:
            middle = (starts + ends) / 2
            mask = (middle >= start_s) & (middle < end_s)
    else:
        mask = (starts >= start_s) & (starts < end_s)
    return rows[mask]


@dataclass
class WindowContent:
    """What each modality holds inside one window of one media."""

    start_s: float
    end_s: float
    #: Rows of each table by name (e.g. 'face_expression', 'opensmile_lld', 'words').
    rows: dict[str, pd.DataFrame]


def window_contents(
    tables: dict[str, pd.DataFrame],
    media_id: str,
    windows: list[tuple[float, float]],
    overlap: bool = False,
) -> list[WindowContent]:
    """Cut several tables of one media by the same windows.

    Args:
        tables: name -> frame-level rows (as read by ``FeatureStore.frame_table``); a transcript
            table may be split first into words and segments by its ``kind`` column.
        media_id: the media to cut.
        windows: ``(start, end)`` seconds, e.g. from :func:`sliding_windows`.
        overlap: count spans that overlap a window rather than those whose midpoint is inside.
    """
    own = {name: t[t["media_id"] == media_id] for name, t in tables.items()}
    return [
        WindowContent(s, e, {name: rows_in_window(t, s, e, overlap) for name, t in own.items()})
        for s, e in windows
    ]
