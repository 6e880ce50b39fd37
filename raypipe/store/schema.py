"""Arrow schemas of the store's tables (documented in docs/store.md)."""

from __future__ import annotations

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_MISSING = "missing"
#: Audio and text extractors on a media without an audio stream: done, nothing to extract.
STATUS_NO_AUDIO = "no_audio"

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
        # Quality summary of visual extractors (null for the others).
        pa.field("tracks", pa.int32()),
        pa.field("face_score", pa.float32()),
        pa.field("probe_s", pa.float32()),
        pa.field("decode_s", pa.float32()),
        pa.field("faces_s", pa.float32()),
        pa.field("embed_s", pa.float32()),
        # Fraction of the declared duration that decoded (visual and audio extractors; null
        # when the container declares no duration). Below 1 on a truncated file.
        pa.field("coverage", pa.float32()),
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

#: Manifest rows as kept inside the store (format 1 kept the first four columns only).
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("split", pa.string()),
        # When the row was recorded: the newest row of a media id is its current row.
        pa.field("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)

#: A status that retires a media's result (``raypipe store verify --repair``): not done, so
#: the next ``raypipe extract`` computes it again.
STATUS_RETIRED = "retired"

#: The store's index: one row per (media, extractor version) result, newest row wins. It holds
#: the media row's status and quality columns (everything but the feature vector), the source
#: file's fingerprint, and where the result's rows live with each data file's SHA-256.
INDEX_SCHEMA = pa.schema(
    [
        *(field for field in MEDIA_SCHEMA if field.name not in ("features", "written_at")),
        pa.field("written_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # Content the result was computed from (null when the media had no readable file).
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("digest", pa.string()),
        # Store-relative data files holding this result's rows, and their SHA-256 (hex).
        pa.field("media_file", pa.string()),
        pa.field("media_sha256", pa.string()),
        pa.field("frames_file", pa.string()),
        pa.field("frames_sha256", pa.string()),
        pa.field("crops_file", pa.string()),
        pa.field("crops_sha256", pa.string()),
    ]
)

#: Frame rows of face extractors: FRAME_SCHEMA plus which face, which track, its landmarks.
FACE_FRAME_SCHEMA = pa.schema(
    [
        *FRAME_SCHEMA,
        pa.field("face_index", pa.int16()),
        pa.field("track_id", pa.int32()),
        pa.field("main_track", pa.bool_()),
        pa.field("landmarks", pa.list_(pa.float32(), 10)),
    ]
)

#: Aligned face crops (optional, for training): raw RGB pixels, row-major (size, size, 3).
CROP_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("timestamp_s", pa.float32(), nullable=False),
        pa.field("face_index", pa.int16(), nullable=False),
        pa.field("track_id", pa.int32(), nullable=False),
        pa.field("main_track", pa.bool_(), nullable=False),
        pa.field("size", pa.int16(), nullable=False),
        pa.field("pixels", pa.binary(), nullable=False),
    ]
)

#: Frame rows of audio and text extractors: one row per time span (an openSMILE LLD frame, a
#: voice-activity segment, a window, a transcript segment or word), with start and end seconds.
SPAN_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int32(), nullable=False),
        pa.field("timestamp_s", pa.float32(), nullable=False),
        pa.field("end_s", pa.float32(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("features", pa.list_(pa.float32())),
    ]
)

#: Transcript rows: SPAN_SCHEMA (kind 'segment' or 'word') plus text and decoder scores.
TRANSCRIPT_SCHEMA = pa.schema(
    [
        *SPAN_SCHEMA,
        pa.field("segment_index", pa.int32()),
        pa.field("text", pa.string()),
        pa.field("probability", pa.float32()),
        pa.field("no_speech_prob", pa.float32()),
        pa.field("language", pa.string()),
    ]
)
