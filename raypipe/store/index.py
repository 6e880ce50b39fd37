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
import pyarrow.compute as pc

from raypipe.store import layout
from raypipe.store.files import StoreFiles
from raypipe.store.schema import INDEX_SCHEMA, STATUS_RETIRED

log = logging.getLogger(__name__)


@dataclass
class IndexView:
    """The live rows of one extractor version's index, and the index files behind them."""

    #: One row per media (newest wins; retired rows dropped), columns as asked.
    table: pa.Table
    #: Store-relative index files that were read.
    files: list[str] = field(default_factory=list)
    #: Index files that could not be read: (store-relative path, reason).
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: Data files named by any row of the files read, live or superseded (when every column
    #: was read).
    named: set[str] = field(default_factory=set)

    @property
    def rows(self) -> pd.DataFrame:
        """The live rows as a DataFrame."""
        return self.table.to_pandas()


def read_index(
    files: StoreFiles,
    extractor: str,
    version: str,
    columns: list[str] | None = None,
    keep_retired: bool = False,
) -> IndexView:
    """Live index rows of one extractor version (``columns`` plus media_id, status).

    A damaged index file is named in a warning and skipped: its media count as not done (a
    re-run computes them again), nothing else is lost. A file that vanishes while it is read
    (another job folded it) makes the listing start again.
    """
    for _ in range(_ATTEMPTS - 1):
        try:
            return _read_index(files, extractor, version, columns, keep_retired)
        except FileNotFoundError:
            continue
    return _read_index(files, extractor, version, columns, keep_retired)


#: Listings of an index tried before a file that keeps vanishing counts as damaged.
_ATTEMPTS = 5


def _read_index(
    files: StoreFiles,
    extractor: str,
    version: str,
    columns: list[str] | None,
    keep_retired: bool,
) -> IndexView:
    wanted = None
    if columns is not None:
        wanted = list(dict.fromkeys(["media_id", "status", "written_at", *columns]))
    schema = INDEX_SCHEMA if wanted is None else pa.schema([INDEX_SCHEMA.field(c) for c in wanted])
    tables: list[pa.Table] = []
    view = IndexView(table=schema.empty_table())
    for info in files.listing(layout.index_dir(extractor, version)):
        relative = files.relative(info.path)
        try:
            table = files.read_parquet(relative, wanted)
        except FileNotFoundError:
            raise
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
        tables.append(table.select(schema.names).cast(schema))
        view.files.append(relative)
    if not tables:
        return view
    merged = pa.concat_tables(tables)
    if wanted is None:
        view.named = {
            name
            for level in layout.LEVEL_DIRS
            for name in pc.unique(merged[f"{level}_file"].drop_null()).to_pylist()
        }
    if len(tables) > 1:
        merged = newest_per_media(merged)
    if not keep_retired:
        merged = merged.filter(pc.not_equal(merged["status"], STATUS_RETIRED))
    view.table = merged
    return view


def newest_per_media(table: pa.Table) -> pa.Table:
    """One row per media_id: the newest by ``written_at``, ties to the row read last."""
    order = pa.array(np.arange(table.num_rows))
    ranked = table.append_column("_order", order)
    ranked = ranked.take(
        pc.sort_indices(ranked, [("written_at", "ascending"), ("_order", "ascending")])
    )
    ranked = ranked.set_column(ranked.schema.get_field_index("_order"), "_order", order)
    newest = ranked.group_by("media_id").aggregate([("_order", "max")])["_order_max"]
    return ranked.take(newest.take(pc.sort_indices(newest))).drop_columns("_order")


def commit(files: StoreFiles, extractor: str, version: str, rows: pa.Table) -> str:
    """Add index rows (a new file, written after the data files they name); returns its path."""
    relative = f"{layout.index_dir(extractor, version)}/{layout.unique_name()}"
    files.write_parquet(relative, rows.cast(INDEX_SCHEMA))
    return relative


def checkpoint(files: StoreFiles, extractor: str, version: str) -> int:
    """Fold every readable index file of a version into one; returns how many were folded.

    Only files that were read are removed, after the new file is written: a write that lands
    meanwhile stays in its own file, and a crash in between leaves rows twice, which the
    newest-row rule reads once. Retired rows are kept (an older row elsewhere must not come
    back to life).
    """
    view = read_index(files, extractor, version, keep_retired=True)
    if len(view.files) <= 1:
        return 0
    commit(files, extractor, version, view.table)
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
