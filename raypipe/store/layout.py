"""Where things live inside a feature store (a local folder or a pyarrow-filesystem URI).

```
STORE/
  raypipe_store.json                       format marker
  manifest.parquet                         media_id, path, label, split (merged over runs)
  extractors.json                          latest version of each extractor, with its config
  .lock                                    held while the two files above are rewritten
  jobs/<UTC time>-<id>.json                one per extract job: its resolved config, raypipe
                                           version, code revision, summary (not read by jobs)
  media/extractor=<name>/version=<v>/<key>.parquet    one row per media: status + media features
  frames/extractor=<name>/version=<v>/<key>.parquet   one row per sampled frame (visual only)
  crops/extractor=<name>/version=<v>/<key>.parquet    aligned face crops (when asked for)
```
``<key>`` is derived from the media id only, so re-writing a media's result replaces its file
and can never duplicate rows. Hive-style folder names make ``pandas.read_parquet(STORE/media)``
and ``ray.data.read_parquet`` return ``extractor`` and ``version`` columns without raypipe.
"""

from __future__ import annotations

import hashlib
import re

FORMAT_VERSION = 1
MARKER = "raypipe_store.json"
MANIFEST = "manifest.parquet"
EXTRACTORS = "extractors.json"
#: Lock file taken while the manifest or the registry is rewritten (local stores).
LOCK = ".lock"
#: Folder of the extract jobs' records (one JSON file per job).
JOBS = "jobs"
LEVEL_DIRS = ("media", "frames", "crops")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def media_key(media_id: str) -> str:
    """File-name-safe key for a media id: a readable prefix plus a hash (ids may hold slashes)."""
    digest = hashlib.sha1(media_id.encode("utf-8")).hexdigest()[:12]
    prefix = _SAFE.sub("_", media_id)[-40:].strip("_.") or "media"
    return f"{prefix}-{digest}"


def partition_dir(level: str, extractor: str, version: str) -> str:
    """Relative folder of one extractor version's table at ``level`` (media, frames, crops)."""
    if level not in LEVEL_DIRS:
        raise ValueError(f"level must be one of {LEVEL_DIRS}, got {level!r}")
    return f"{level}/extractor={extractor}/version={version}"


def media_file(level: str, extractor: str, version: str, media_id: str) -> str:
    """Relative path of one media's file for one extractor version at ``level``."""
    return f"{partition_dir(level, extractor, version)}/{media_key(media_id)}.parquet"
