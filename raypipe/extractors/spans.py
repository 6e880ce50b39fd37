"""Rows of audio and text extractors: time spans with start and end seconds (SPAN_SCHEMA)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from raypipe.media.audio import NoAudioError
from raypipe.store.schema import SPAN_SCHEMA, STATUS_NO_AUDIO


def span_table(
    media_id: str,
    starts: Sequence[float] | np.ndarray,
    ends: Sequence[float] | np.ndarray,
    kind: str,
    features: np.ndarray | Sequence[Sequence[float] | None] | None = None,
    schema: pa.Schema = SPAN_SCHEMA,
    **columns: Sequence[Any],
) -> pa.Table:
    """A table of spans ``[start, end)`` in seconds, one row each, with optional features.

    Args:
        media_id: the media the spans belong to.
        starts: start of each span, seconds.
        ends: end of each span, seconds.
        kind: what a span is ('lld', 'segment', 'window', 'word', 'speech').
        features: (N, D) values, or one vector (or None) per span; None: null features.
        schema: the table's schema (SPAN_SCHEMA or an extension of it).
        **columns: further columns of ``schema``, one value per span.
    """
    n = len(starts)
    if features is None or n == 0:
        feature_column: list[Any] = [None] * n
    elif isinstance(features, np.ndarray):
        feature_column = list(np.asarray(features, np.float32).reshape(n, -1))
    else:
        feature_column = [None if f is None else np.asarray(f, np.float32) for f in features]
    data = {
        "media_id": [media_id] * n,
        "frame_index": np.arange(n, dtype=np.int32),
        "timestamp_s": np.asarray(starts, np.float32),
        "end_s": np.asarray(ends, np.float32),
        "kind": [kind] * n,
        "features": feature_column,
        **{name: list(values) for name, values in columns.items()},
    }
    arrays = [pa.array(data.get(field.name, [None] * n), type=field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def no_audio_row(exc: NoAudioError) -> dict[str, Any]:
    """The media row of an audio or text extractor for a media without an audio stream."""
    return {"status": STATUS_NO_AUDIO, "error": str(exc), "duration_s": 0.0}
