"""Keeping a store small and plain: compaction (many small files into few) and garbage collection.

:func:`compact` rewrites the small data files of an extractor version, and the files that hold
rows no longer live (a media computed again), into files of about ``target_mb``; it then folds
the version's index into one file. After it, every data file holds live rows only, so pandas,
DuckDB or Ray Data reading the folders without raypipe see each media once.

:func:`collect_garbage` removes what no reader needs: versions that are not current, data files
that no index row names (writes that crashed before their index file), temporary files of
failed writes, and damaged files set aside by ``store verify --repair``. Files younger than
``min_age_s`` are left alone: they may belong to a job writing right now.

Run these when no job reads the store: a reader that listed files before a compaction may find
one of them gone.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from raypipe.store import index, layout
from raypipe.store.feature_store import FeatureStore, is_in
from raypipe.store.schema import INDEX_SCHEMA, MANIFEST_SCHEMA

log = logging.getLogger(__name__)

#: Size a compacted data file grows to before the next one starts, MiB.
TARGET_MB = 128


@dataclass
class CompactReport:
    """What a compaction did."""

    versions: int = 0
    data_files_before: int = 0
    data_files_after: int = 0
    index_files_folded: int = 0
    manifest_files_folded: int = 0
    seconds: float = 0.0


@dataclass
class GcReport:
    """What a garbage collection removed (or would remove, on a dry run)."""

    versions_removed: list[str]
    files_removed: int = 0
    bytes_freed: int = 0
    dry_run: bool = False


def compact(
    store: FeatureStore,
    versions: Sequence[tuple[str, str]] | None = None,
    target_mb: float = TARGET_MB,
) -> CompactReport:
    """Compact ``versions`` (every (extractor, version) with an index when None) and the
    manifest; see the module docstring."""
    start = time.perf_counter()
    report = CompactReport()
    for name, version in versions if versions is not None else index.versions(store.files):
        report.versions += 1
        before, after = _compact_version(store, name, version, int(target_mb * 2**20))
        report.data_files_before += before
        report.data_files_after += after
        report.index_files_folded += index.checkpoint(store.files, name, version)
    report.manifest_files_folded = _compact_manifest(store)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _compact_version(store: FeatureStore, name: str, version: str, target: int) -> tuple[int, int]:
    files = store.files
    live = index.read_index(files, name, version).rows
    superseded = _superseded_files(store, name, version, live)
    moved: dict[str, dict[str, str]] = defaultdict(dict)
    replaced: list[str] = []
    before = after = 0
    for level in layout.LEVEL_DIRS:
        column = f"{level}_file"
        ids_by_file: dict[str, list[str]] = defaultdict(list)
        for media_id, relative in zip(live["media_id"], live[column], strict=True):
            if isinstance(relative, str):
                ids_by_file[relative].append(media_id)
        sizes = {
            files.relative(i.path): i.size
            for i in files.listing(layout.partition_dir(level, name, version))
            if not i.base_name.startswith(layout.TEMPORARY_PREFIX)
        }
        referenced = [f for f in sorted(ids_by_file) if f in sizes]
        before += len(referenced)
        rewrite = [
            f
            for f in referenced
            if sizes[f] < target // 4 or _holds_dead_rows(store, f, ids_by_file[f])
        ]
        if len(rewrite) == 1 and not _holds_dead_rows(store, rewrite[0], ids_by_file[rewrite[0]]):
            rewrite = []
        after += len(referenced) - len(rewrite)
        chunk: list[str] = []
        chunk_bytes = 0
        for position, relative in enumerate(rewrite):
            chunk.append(relative)
            chunk_bytes += sizes[relative]
            if chunk_bytes >= target or position == len(rewrite) - 1:
                tables = []
                for old in chunk:
                    table = files.read_parquet(old)
                    keep = pa.array(ids_by_file[old])
                    tables.append(table.filter(pc.is_in(table["media_id"], keep)))
                merged = pa.concat_tables(tables, promote_options="default")
                new = f"{layout.partition_dir(level, name, version)}/{layout.unique_name('part-')}"
                digest = files.write_parquet(new, merged)
                after += 1
                for old in chunk:
                    for media_id in ids_by_file[old]:
                        moved[media_id].update({column: new, f"{level}_sha256": digest})
                replaced.extend(chunk)
                chunk, chunk_bytes = [], 0
    if moved:
        # Same written_at as the rows they re-point: a newer result written meanwhile by
        # another job still wins; among equals this later index file does.
        rows = live[is_in(live["media_id"], moved)].copy()
        for level in layout.LEVEL_DIRS:
            for column in (f"{level}_file", f"{level}_sha256"):
                rows[column] = rows[column].astype(object)
        for position, media_id in enumerate(rows["media_id"]):
            for column, value in moved[media_id].items():
                rows.iat[position, rows.columns.get_loc(column)] = value
        table = pa.Table.from_pandas(rows, schema=INDEX_SCHEMA, preserve_index=False)
        index.commit(files, name, version, table)
        index.checkpoint(files, name, version)
        for relative in replaced:
            files.delete(relative)
    # Files whose every media was computed again: no live row names them any more.
    for relative in sorted(superseded):
        files.delete(relative)
    return before, after


def _superseded_files(store: FeatureStore, name: str, version: str, live: Any) -> set[str]:
    """Data files some index row names but no live row does (all their media superseded).
    A write in progress has no index row yet, so its files are never among them."""
    files = store.files
    columns = [f"{level}_file" for level in layout.LEVEL_DIRS]
    named: set[str] = set()
    for info in files.listing(layout.index_dir(name, version)):
        if info.base_name.startswith(layout.TEMPORARY_PREFIX):
            continue
        try:
            table = files.read_parquet(files.relative(info.path), columns)
        except (OSError, pa.ArrowException):
            continue  # named by verify; its files are left alone
        for column in columns:
            named.update(v for v in table[column].to_pylist() if isinstance(v, str))
    for column in columns:
        named.difference_update(v for v in live[column] if isinstance(v, str))
    return named


def _holds_dead_rows(store: FeatureStore, relative: str, live_ids: list[str]) -> bool:
    """Whether a data file holds rows of media whose live row points elsewhere."""
    ids = store.files.read_parquet(relative, ["media_id"])["media_id"]
    return bool(pc.any(pc.invert(pc.is_in(ids, pa.array(live_ids)))).as_py())


def _compact_manifest(store: FeatureStore) -> int:
    parts = store.manifest_files()
    if len(parts) <= 1:
        return 0
    tables = []
    for relative in parts:
        try:
            tables.append(store.files.read_parquet(relative).cast(MANIFEST_SCHEMA))
        except (OSError, pa.ArrowException):
            parts = [p for p in parts if p != relative]  # left for verify --repair
    frame = pa.concat_tables(tables).to_pandas().sort_values("recorded_at", kind="stable")
    frame = frame.drop_duplicates("media_id", keep="last")
    table = pa.Table.from_pandas(frame, schema=MANIFEST_SCHEMA, preserve_index=False)
    store.files.write_parquet(f"{layout.MANIFEST_DIR}/{layout.unique_name('part-')}", table)
    for relative in parts:
        store.files.delete(relative)
    return len(parts)


def collect_garbage(
    store: FeatureStore, min_age_s: float = 3600.0, dry_run: bool = False
) -> GcReport:
    """Remove versions that are not current, unreferenced data files, stale temporary files
    and quarantined files (see the module docstring); then compact what is left."""
    files = store.files
    current = {(name, r.version) for name, r in store.extractors().items()}
    cutoff = time.time() - min_age_s
    report = GcReport(versions_removed=[], dry_run=dry_run)
    doomed = []
    known = set(index.versions(files))
    for level in layout.LEVEL_DIRS:
        for info in files.listing(level):
            parts = files.relative(info.path).split("/")
            if len(parts) >= 4:
                known.add((parts[1].split("=", 1)[-1], parts[2].split("=", 1)[-1]))
    for name, version in sorted(known - current):
        report.versions_removed.append(f"{name}@{version}")
        folders = [layout.partition_dir(level, name, version) for level in layout.LEVEL_DIRS]
        for folder in [layout.index_dir(name, version), *folders]:
            doomed.extend(files.listing(folder))
        record = layout.extractor_file(name, version)
        if files.exists(record):
            doomed.append(files.fs.get_file_info(files.path(record)))
    for name, version in sorted(current):
        live = index.read_index(files, name, version).rows
        named = set()
        for level in layout.LEVEL_DIRS:
            named.update(v for v in live[f"{level}_file"] if isinstance(v, str))
            for info in files.listing(layout.partition_dir(level, name, version)):
                old = info.mtime is not None and info.mtime.timestamp() < cutoff
                if files.relative(info.path) not in named and old:
                    doomed.append(info)
    for info in files.walk():
        stale = info.base_name.startswith(layout.TEMPORARY_PREFIX) and (
            info.mtime is None or info.mtime.timestamp() < cutoff
        )
        if stale or files.relative(info.path).startswith(layout.QUARANTINE + "/"):
            doomed.append(info)
    seen = set()
    for info in doomed:
        if info.path in seen:
            continue
        seen.add(info.path)
        report.files_removed += 1
        report.bytes_freed += info.size or 0
        if not dry_run:
            files.delete(files.relative(info.path))
    if not dry_run:
        compact(store, sorted(current))
    return report
