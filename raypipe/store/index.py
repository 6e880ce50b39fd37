"""The store's index: which media are done for an extractor version, with what status, and where.

Each extractor version has a folder of index files (``_index/extractor=X/version=V/``), each a
Parquet table of :data:`~raypipe.store.schema.INDEX_SCHEMA` rows. A write adds one file after
the data files it names; compaction folds many files into one. The live row of a media is its
newest (``written_at``, then file-name order); a ``retired`` live row means "not done". Planning
and status read these small tables only, never the data files, so their cost grows with the
number of media, not with the number of files written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from raypipe.store import layout
from raypipe.store.files import StoreFiles
from raypipe.store.schema import INDEX_SCHEMA, STATUS_RETIRED

log = logging.getLogger(__name__)


@dataclass
class IndexView:
    """The live rows of one extractor version's index, and the index files behind them."""

    #: One row per media (newest wins; retired rows dropped), columns as asked.
    rows: pd.DataFrame
    #: Store-relative index files that were read.
    files: list[str] = field(default_factory=list)
    #: Index files that could not be read: (store-relative path, reason).
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def read_index(
    files: StoreFiles,
    extractor: str,
    version: str,
    columns: list[str] | None = None,
    keep_retired: bool = False,
) -> IndexView:
    """Live index rows of one extractor version (``columns`` plus media_id, status).

    A damaged index file is named in a warning and skipped: its media count as not done (a
    re-run computes them again), nothing else is lost.
    """
    wanted = None
    if columns is not None:
        wanted = list(dict.fromkeys(["media_id", "status", "written_at", *columns]))
    tables: list[pa.Table] = []
    view = IndexView(rows=pd.DataFrame())
    for info in files.listing(layout.index_dir(extractor, version)):
        relative = files.relative(info.path)
        if relative.rsplit("/", 1)[-1].startswith(layout.TEMPORARY_PREFIX):
            continue
        try:
            table = files.read_parquet(relative, wanted)
        except (OSError, pa.ArrowException) as exc:
            reason = " ".join(str(exc).split())[:200]
            log.warning(
                "index file '%s' cannot be read (%s); its media count as not done. Run "
                "`raypipe store verify --repair` to move it aside.",
                files.path(relative),
                reason,
            )
            view.unreadable.append((relative, reason))
            continue
        tables.append(table)
        view.files.append(relative)
    schema = INDEX_SCHEMA if wanted is None else pa.schema([INDEX_SCHEMA.field(c) for c in wanted])
    if not tables:
        view.rows = schema.empty_table().to_pandas()
        return view
    merged = pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])
    frame = merged.to_pandas()
    if len(tables) > 1:
        frame["_order"] = np.arange(len(frame))
        frame = frame.sort_values(["written_at", "_order"], kind="stable")
        frame = frame.drop_duplicates("media_id", keep="last").drop(columns="_order")
    if not keep_retired:
        frame = frame[frame["status"] != STATUS_RETIRED]
    view.rows = frame.reset_index(drop=True)
    return view


def commit(files: StoreFiles, extractor: str, version: str, rows: pa.Table) -> str:
    """Add index rows (a new file, written after the data files they name); returns its path."""
    relative = f"{layout.index_dir(extractor, version)}/{layout.unique_name()}"
    files.write_parquet(relative, rows.cast(INDEX_SCHEMA))
    return relative


def checkpoint(files: StoreFiles, extractor: str, version: str) -> int:
    """Fold every readable index file of a version into one; returns how many were folded.

    Only files that were read are removed, after the new file is written: a write that lands
    meanwhile stays in its own file, and a crash in between leaves rows twice, which the
    newest-row rule reads once.
    """
    view = read_index(files, extractor, version, keep_retired=True)
    if len(view.files) <= 1:
        return 0
    live = view.rows[view.rows["status"] != STATUS_RETIRED]
    table = pa.Table.from_pandas(live, schema=INDEX_SCHEMA, preserve_index=False)
    commit(files, extractor, version, table)
    for relative in view.files:
        files.delete(relative)
    return len(view.files)


def versions(files: StoreFiles) -> list[tuple[str, str]]:
    """Every (extractor, version) with an index folder."""
    found = set()
    for info in files.listing(layout.INDEX_DIR):
        parts = files.relative(info.path).split("/")
        named = len(parts) >= 4 and parts[1].startswith("extractor=")
        if named and parts[2].startswith("version="):
            found.add((parts[1].split("=", 1)[1], parts[2].split("=", 1)[1]))
    return sorted(found)
