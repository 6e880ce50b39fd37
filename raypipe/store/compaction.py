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

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raypipe.store import index, layout
from raypipe.store.feature_store import FeatureStore
from raypipe.store.schema import MANIFEST_SCHEMA

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
        before, after, folded = _compact_version(store, name, version, int(target_mb * 2**20))
        report.data_files_before += before
        report.data_files_after += after
        report.index_files_folded += folded + index.checkpoint(store.files, name, version)
    report.manifest_files_folded = _compact_manifest(store)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _compact_version(
    store: FeatureStore, name: str, version: str, target: int
) -> tuple[int, int, int]:
    """Rewrite one version's small and partly superseded data files; returns the data files
    before and after, and the index files folded on the way."""
    files = store.files
    view = index.read_index(files, name, version)
    live = view.rows
    # Data files whose every media was computed again: named by some row of the index files
    # just read, by no live one. Judged from the same read, so a write committed meanwhile is
    # never among them; nothing is judged while an index file cannot be read.
    superseded: set[str] = set()
    if not view.unreadable:
        live_files = {
            v for level in layout.LEVEL_DIRS for v in live[f"{level}_file"] if isinstance(v, str)
        }
        superseded = view.named - live_files
    moved: dict[str, dict[str, str]] = defaultdict(dict)
    replaced: list[str] = []
    before = after = folded = 0
    for level in layout.LEVEL_DIRS:
        column = f"{level}_file"
        ids_by_file: dict[str, list[str]] = defaultdict(list)
        digests: dict[str, str] = {}
        for media_id, relative, digest in zip(
            live["media_id"], live[column], live[f"{level}_sha256"], strict=True
        ):
            if isinstance(relative, str):
                ids_by_file[relative].append(media_id)
                digests[relative] = digest
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
            if chunk_bytes < target and position < len(rewrite) - 1:
                continue
            parts = []
            chunk_media: list[str] = []
            for old in chunk:
                # Only a file that matches its recorded checksum is rewritten: a damaged one
                # stays where it is for `store verify` (rewriting it would bless the damage).
                table = _read_verified(store, old, digests[old])
                if table is None:
                    after += 1
                    continue
                parts.append(table.filter(pc.is_in(table["media_id"], pa.array(ids_by_file[old]))))
                replaced.append(old)
                chunk_media.extend(ids_by_file[old])
            if parts:
                merged = pa.concat_tables(parts, promote_options="default")
                new = f"{layout.partition_dir(level, name, version)}/{layout.unique_name('part-')}"
                digest = files.write_parquet(new, merged)
                after += 1
                for media_id in chunk_media:
                    moved[media_id].update({column: new, f"{level}_sha256": digest})
            chunk, chunk_bytes = [], 0
    if moved:
        # Same written_at as the rows they re-point: a newer result written meanwhile by
        # another job still wins; among equals this later index file does. Done in Arrow, so
        # integer columns (mtime_ns) keep every digit.
        table = view.table.filter(pc.is_in(view.table["media_id"], pa.array(list(moved))))
        ids = table["media_id"].to_pylist()
        for column in {c for refs in moved.values() for c in refs}:
            old = table[column].to_pylist()
            new = [moved[m].get(column, o) for m, o in zip(ids, old, strict=True)]
            table = table.set_column(
                table.schema.get_field_index(column), column, pa.array(new, pa.string())
            )
        index.commit(files, name, version, table)
        folded = index.checkpoint(files, name, version)
        for relative in replaced:
            files.delete(relative)
    # Files whose every media was computed again: no live row names them any more.
    for relative in sorted(superseded):
        files.delete(relative)
    return before, after, folded


def _read_verified(store: FeatureStore, relative: str, digest: str | None) -> pa.Table | None:
    """A data file's table if its bytes match the recorded SHA-256, else None (warned)."""
    try:
        data = store.files.read_bytes(relative)
        if digest and hashlib.sha256(data).hexdigest() != digest:
            raise ValueError("checksum differs from the index")
        return pq.read_table(pa.BufferReader(data))
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning(
            "compaction left '%s' alone: %s; run `raypipe store verify --repair`",
            store.path(relative),
            " ".join(str(exc).split())[:200],
        )
        return None


def _holds_dead_rows(store: FeatureStore, relative: str, live_ids: list[str]) -> bool:
    """Whether a data file holds rows of media whose live row points elsewhere."""
    try:
        ids = store.files.read_parquet(relative, ["media_id"])["media_id"]
    except (OSError, pa.ArrowException):
        return False  # damaged: left for verify
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
    if not tables:
        return 0
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
