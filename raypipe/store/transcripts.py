"""Reading stored transcripts back as one text per media."""

from __future__ import annotations

import pandas as pd

from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import STATUS_NO_AUDIO, STATUS_OK

#: Name of the built-in transcription extractor.
TRANSCRIPT_EXTRACTOR = "whisper_transcript"


def load_transcripts(store: FeatureStore | str, extractor: str = TRANSCRIPT_EXTRACTOR) -> pd.Series:
    """Full transcript of every transcribed media: media_id -> text (segments joined in time).

    Media whose transcription succeeded without speech (silence, or no audio stream) map to an
    empty string; media whose transcription failed are left out.

    Raises:
        RaypipeError: the store does not exist or has no such extractor.
    """
    if not isinstance(store, FeatureStore):
        store = FeatureStore(store)
    store.require()
    media = store.media_table(extractor)
    done = media.loc[media["status"].isin([STATUS_OK, STATUS_NO_AUDIO]), "media_id"]
    texts = pd.Series("", index=pd.Index(sorted(done), name="media_id"), dtype=object)
    rows = store.frame_table(extractor)
    if len(rows) and "kind" in rows.columns:
        segments = rows[(rows["kind"] == "segment") & rows["media_id"].isin(texts.index)]
        segments = segments.sort_values(["media_id", "timestamp_s", "frame_index"])
        joined = segments.groupby("media_id", sort=False)["text"].agg(
            lambda parts: " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
        )
        texts.loc[joined.index] = joined.to_numpy()
    texts.name = "transcript"
    return texts
