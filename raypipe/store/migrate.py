"""Converting a format-1 store (one Parquet file per media) to format 2, recomputing nothing.

Format 1 kept ``media|frames|crops/extractor=X/version=V/<key>.parquet`` (one file per media),
``manifest.parquet`` and ``extractors.json``. :func:`migrate` writes each version's rows into
format-2 files of many media with an index, the manifest and the extractor records, then
switches the marker to format 2 and removes the format-1 files. Each media's fingerprint is
taken from its manifest file as it is now (the results are assumed to match the files on disk,
as format 1 assumed). A conversion that stops half-way is finished by running it again.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from raypipe.errors import RaypipeError
from raypipe.store import layout
from raypipe.store.feature_store import ExtractorRecord, FeatureStore, MediaResult
from raypipe.store.fingerprint import fingerprint

log = logging.getLogger(__name__)

#: Format-1 files, store-relative.
V1_MANIFEST = "manifest.parquet"
V1_EXTRACTORS = "extractors.json"
V1_LOCK = ".lock"
#: Media converted per format-2 write (rows of this many media share a file).
CHUNK = 2000


@dataclass
class MigrateReport:
    """What a conversion did."""

    media: int = 0
    versions: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    removed_files: int = 0


#: Names of format-2 data files (``part-<UTC stamp>-<12 hex>.parquet``); every other
#: ``<key>.parquet`` in a level folder is a format-1 file (its key may start with ``part-``).
V2_DATA = re.compile(r"^part-\d{8}T\d{12}Z-[0-9a-f]{12}\.parquet$")


def _v1_files(store: FeatureStore, level: str) -> dict[tuple[str, str], list[str]]:
    by_version: dict[tuple[str, str], list[str]] = {}
    for info in store.files.listing(level):
        relative = store.files.relative(info.path)
        parts = relative.split("/")
        if len(parts) != 4 or V2_DATA.match(parts[3]):
            continue
        name, version = parts[1].split("=", 1)[-1], parts[2].split("=", 1)[-1]
        by_version.setdefault((name, version), []).append(relative)
    return by_version


def _read(store: FeatureStore, relatives: list[str]) -> pa.Table:
    """Every file's rows, on the union of their schemas (older files lack newer columns)."""
    if not relatives:
        return pa.table({})
    paths = [store.path(r) for r in relatives]
    schemas = {}
    for path in paths:
        schema = pq.read_schema(path, filesystem=store.fs)
        schemas.setdefault(str(schema), schema)
    schema = pa.unify_schemas(list(schemas.values()), promote_options="permissive")
    return pads.dataset(paths, schema=schema, filesystem=store.fs, format="parquet").to_table()


def migrate(store: FeatureStore) -> MigrateReport:
    """Convert a format-1 store in place (see the module docstring)."""
    found = store.format()
    if found is None:
        raise RaypipeError(f"'{store.uri}' is not a raypipe feature store; nothing to convert.")
    files = store.files
    if found == layout.FORMAT_VERSION and _pending(store):
        report = MigrateReport()
        report.removed_files = _remove_v1(store)  # a conversion stopped while cleaning up
        files.write_bytes(layout.MARKER, json.dumps({"format": layout.FORMAT_VERSION}).encode())
        return report
    if found == layout.FORMAT_VERSION:
        raise RaypipeError(f"Store '{store.uri}' already has format {found}; nothing to convert.")
    if found != 1:
        raise RaypipeError(f"Store '{store.uri}' has format {found}; only format 1 converts.")
    report = MigrateReport()
    # A conversion that stopped half-way: its format-2 files are written again from scratch.
    for folder in (layout.INDEX_DIR, layout.MANIFEST_DIR, layout.EXTRACTORS_DIR):
        for info in files.listing(folder):
            files.delete(files.relative(info.path))
    for level in layout.LEVEL_DIRS:
        for info in files.listing(level):
            if V2_DATA.match(info.base_name):
                files.delete(files.relative(info.path))

    manifest = pd.DataFrame(columns=["media_id", "path", "label", "split"])
    if files.exists(V1_MANIFEST):
        manifest = files.read_parquet(V1_MANIFEST).to_pandas()
        store.write_manifest(manifest)
    report.media = len(manifest)
    paths = dict(zip(manifest["media_id"], manifest["path"], strict=True))
    sources = {
        media_id: fingerprint(path) if isinstance(path, str) and path else None
        for media_id, path in paths.items()
    }
    records = []
    if files.exists(V1_EXTRACTORS):
        payload = json.loads(files.read_bytes(V1_EXTRACTORS))
        records = [ExtractorRecord(**record) for record in payload.values()]
    known = {(r.name, r.version) for r in records}

    media_files = _v1_files(store, "media")
    frame_files = _v1_files(store, "frames")
    crop_files = _v1_files(store, "crops")
    for (name, version), relatives in sorted(media_files.items()):
        media = _read(store, relatives).to_pandas()
        frames = _read(store, frame_files.get((name, version), []))
        crops = _read(store, crop_files.get((name, version), []))
        by_media_frames = _split(frames)
        by_media_crops = _split(crops)
        ids = list(media["media_id"])
        for start in range(0, len(ids), CHUNK):
            results = []
            for row in media.iloc[start : start + CHUNK].to_dict("records"):
                media_id = row["media_id"]
                results.append(
                    MediaResult(
                        name,
                        version,
                        media_id,
                        {k: (None if _missing(v) else v) for k, v in row.items()},
                        by_media_frames.get(media_id),
                        by_media_crops.get(media_id),
                        path=paths.get(media_id),
                        source=sources.get(media_id),
                    )
                )
            store.write_results(results)
        report.versions.append(f"{name}@{version}")
        report.rows[f"{name}@{version}"] = len(ids)
    # The versions extractors.json named are the current ones. A version with rows but no
    # record keeps its rows, readable by version (``media_table(name, version)``).
    for name, version in sorted(set(media_files) - known):
        log.warning("%s@%s has rows but no record in extractors.json", name, version)
    store.register_extractors(records)
    # From here on the store reads as format 2; the format-1 files are removed after, and a
    # conversion stopped during that is finished by running it again.
    marker = {"format": layout.FORMAT_VERSION, "removing_format_1": True}
    files.write_bytes(layout.MARKER, json.dumps(marker).encode())
    report.removed_files = _remove_v1(store)
    files.write_bytes(layout.MARKER, json.dumps({"format": layout.FORMAT_VERSION}).encode())
    return report


def _pending(store: FeatureStore) -> bool:
    return bool(json.loads(store.files.read_bytes(layout.MARKER)).get("removing_format_1"))


def _remove_v1(store: FeatureStore) -> int:
    removed = 0
    for level in layout.LEVEL_DIRS:
        for relatives in _v1_files(store, level).values():
            for relative in relatives:
                store.files.delete(relative)
                removed += 1
    for relative in (V1_MANIFEST, V1_EXTRACTORS, V1_LOCK):
        if store.files.exists(relative):
            store.files.delete(relative)
            removed += 1
    return removed


def _split(table: pa.Table) -> dict[str, pa.Table]:
    if table.num_rows == 0:
        return {}
    table = table.drop_columns([c for c in ("extractor", "version") if c in table.column_names])
    frame_ids = table["media_id"].to_pylist()
    out: dict[str, list[int]] = {}
    for position, media_id in enumerate(frame_ids):
        out.setdefault(media_id, []).append(position)
    return {media_id: table.take(rows) for media_id, rows in out.items()}


def _missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
