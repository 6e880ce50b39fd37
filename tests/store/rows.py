"""Synthetic store rows shared by the store tests."""

from __future__ import annotations

import pyarrow as pa

from raypipe.store.feature_store import MediaResult
from raypipe.store.schema import FRAME_SCHEMA


def frame_rows(media_id: str, n: int, value: float = 0.0) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "media_id": [media_id] * n,
            "frame_index": list(range(n)),
            "timestamp_s": [i / 5 for i in range(n)],
            "has_face": [True] * n,
            "face_score": [0.9] * n,
            "box": [[0.0, 0.0, 10.0, 10.0]] * n,
            "features": [[value + i, 1.0] for i in range(n)],
        },
        schema=FRAME_SCHEMA,
    )


def result(media_id: str, value: float = 0.0, count: int = 3) -> MediaResult:
    row = {"status": "ok", "frames": count, "face_frames": count, "seconds": 0.5}
    return MediaResult("vis", "v1", media_id, row, frame_rows(media_id, count, value))
