"""Where things live inside a feature store (a local folder or a pyarrow-filesystem URI).

```
STORE/
  raypipe_store.json                                  {"format": 2}
  manifest/part-<stamp>-<id>.parquet                  media_id, path, label, split, recorded_at
  extractors/<name>/<version>.json                    one record per extractor version
  jobs/<stamp>-<id>.json                              one per extract job (not read by jobs)
  _index/extractor=<name>/version=<v>/<stamp>-<id>.parquet   which media are done, and where
  media/extractor=<name>/version=<v>/part-<stamp>-<id>.parquet   one row per media
  frames/extractor=<name>/version=<v>/part-<stamp>-<id>.parquet  one row per frame or span
  crops/extractor=<name>/version=<v>/part-<stamp>-<id>.parquet   aligned face crops
  _quarantine/...                                     files `store verify --repair` moved aside
```
Data, index and manifest files are written once under a new name and never modified, so several
jobs may write one store at once on any filesystem, object stores included; the newest index row
of a media wins. Extractor and job records are small JSON files rewritten in place.
``<stamp>`` is a UTC time to the microsecond, so names sort in writing order. Hive-style
folder names make ``pandas.read_parquet(STORE/media)`` return ``extractor`` and ``version``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

#: The format this raypipe writes. Format 1 (one file per media) converts with
#: ``raypipe store migrate`` (:mod:`raypipe.store.migrate`).
FORMAT_VERSION = 2
MARKER = "raypipe_store.json"
MANIFEST_DIR = "manifest"
EXTRACTORS_DIR = "extractors"
JOBS = "jobs"
INDEX_DIR = "_index"
QUARANTINE = "_quarantine"
LEVEL_DIRS = ("media", "frames", "crops")
#: Prefix of temporary files (removed when a write fails; `store gc` removes stale ones).
TEMPORARY_PREFIX = ".tmp-"


def unique_name(prefix: str = "", suffix: str = ".parquet") -> str:
    """A new file name that sorts in writing order: ``<prefix><UTC stamp>-<random>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{prefix}{stamp}-{uuid.uuid4().hex[:12]}{suffix}"


def partition_dir(level: str, extractor: str, version: str) -> str:
    """Relative folder of one extractor version's table at ``level`` (media, frames, crops)."""
    if level not in LEVEL_DIRS:
        raise ValueError(f"level must be one of {LEVEL_DIRS}, got {level!r}")
    return f"{level}/extractor={extractor}/version={version}"


def index_dir(extractor: str, version: str) -> str:
    """Relative folder of one extractor version's index files."""
    return f"{INDEX_DIR}/extractor={extractor}/version={version}"


def extractor_file(name: str, version: str) -> str:
    """Relative path of one extractor version's record."""
    return f"{EXTRACTORS_DIR}/{name}/{version}.json"
