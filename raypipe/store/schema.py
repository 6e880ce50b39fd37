"""Arrow schemas of the store's tables (documented in docs/store.md)."""

from __future__ import annotations

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_MISSING = "missing"

#: One row per (media, extractor version): status, counts and media-level features.
MEDIA_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("frames", pa.int32()),
        pa.field("face_frames", pa.int32()),
        pa.field("duration_s", pa.float32()),
        pa.field("features", pa.list_(pa.float32())),
        pa.field("seconds", pa.float32()),
        pa.field("written_at", pa.timestamp("ms", tz="UTC")),
    ]
)

#: One row per sampled frame of a visual extractor; ``features`` is null where no face was found.
FRAME_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("timestamp_s", pa.float32(), nullable=False),
        pa.field("has_face", pa.bool_(), nullable=False),
        pa.field("face_score", pa.float32()),
        pa.field("box", pa.list_(pa.float32(), 4)),
        pa.field("features", pa.list_(pa.float32())),
    ]
)

#: Manifest rows as kept inside the store.
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("split", pa.string()),
    ]
)
